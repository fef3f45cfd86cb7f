package stack

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// proc is one supervised child process.
type proc struct {
	name string
	path string
	args []string
	env  []string // added to this process's environment
	// nice, when above 0, starts the process at that niceness (through
	// nice(1), so that every thread it makes inherits it).
	nice int
	// stopGrace is how long a SIGTERM may take before SIGKILL. The broker
	// gets long: a SIGKILL mid-transaction corrupts what kfake recovers.
	stopGrace time.Duration
}

// supervisor runs procs, restarting any that die, as an orchestrator would.
type supervisor struct {
	out    io.Writer // shared terminal output; lines are prefixed by process name
	mu     sync.Mutex
	logDir string
	wg     sync.WaitGroup
	// quiet sends children's output to their log files only.
	quiet bool
	// running is the current process of each supervised name, for pid.
	running map[string]*exec.Cmd
	// starts counts the processes started per name, the first included.
	starts map[string]int
}

func newSupervisor(out io.Writer, logDir string) (*supervisor, error) {
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, err
	}
	return &supervisor{out: out, logDir: logDir, running: map[string]*exec.Cmd{}, starts: map[string]int{}}, nil
}

// pid returns the pid of name's current process, 0 when none runs (it is
// being restarted, or was never started).
func (s *supervisor) pid(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cmd := s.running[name]; cmd != nil && cmd.Process != nil {
		return cmd.Process.Pid
	}
	return 0
}

// startCount returns how many processes were started for name, restarts included.
func (s *supervisor) startCount(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.starts[name]
}

func (s *supervisor) setRunning(name string, cmd *exec.Cmd) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cmd == nil {
		delete(s.running, name)
		return
	}
	s.running[name] = cmd
	s.starts[name]++
}

// logf prints one devstack line.
func (s *supervisor) logf(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(s.out, "devstack: "+format+"\n", args...)
}

// start runs p until ctx ends, restarting it with a growing delay whenever it
// exits on its own. When ctx ends it sends SIGTERM and waits, then SIGKILLs
// after p.stopGrace.
func (s *supervisor) start(ctx context.Context, p proc) error {
	if _, err := os.Stat(p.path); err != nil {
		return fmt.Errorf("%s: binary %s not found (run `make build`): %w", p.name, p.path, err)
	}
	logFile, err := os.OpenFile(filepath.Join(s.logDir, p.name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	// from is where the running process's output starts in the log file,
	// taken before it starts: a process that fails at once has written
	// its last line before its spawn returns.
	from := fileSize(logFile)
	cmd, err := s.spawn(p, logFile)
	if err != nil {
		logFile.Close()
		return err
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer logFile.Close()
		delay := 500 * time.Millisecond
		for {
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			startedAt := time.Now()
			select {
			case <-ctx.Done():
				s.stop(p, cmd, exited)
				s.setRunning(p.name, nil)
				return
			case err := <-exited:
				s.setRunning(p.name, nil)
				if ctx.Err() != nil {
					return
				}
				if time.Since(startedAt) > time.Minute {
					delay = 500 * time.Millisecond
				}
				reason := exitReason(err)
				if l := lastLine(logFile.Name(), from); s.quiet && l != "" {
					// Quiet, the child's output is in its log file only;
					// its last line usually says why it stopped.
					reason += "; its last line: " + l
				}
				s.logf("%s exited (%s); restarting in %v", p.name, reason, delay)
				select {
				case <-ctx.Done():
					return
				case <-time.After(delay):
				}
				delay = min(delay*2, 10*time.Second)
			}
			for {
				from = fileSize(logFile)
				cmd, err = s.spawn(p, logFile)
				if err == nil {
					s.logf("%s restarted (pid %d)", p.name, cmd.Process.Pid)
					break
				}
				s.logf("%s restart failed: %v", p.name, err)
				select {
				case <-ctx.Done():
					return
				case <-time.After(delay):
				}
			}
		}
	}()
	return nil
}

// spawn starts one process of p, its output to logFile (and the terminal
// unless quiet).
func (s *supervisor) spawn(p proc, logFile *os.File) (*exec.Cmd, error) {
	path, args := p.path, p.args
	if p.nice > 0 {
		if n, err := exec.LookPath("nice"); err == nil {
			path, args = n, append([]string{"-n", strconv.Itoa(p.nice), p.path}, p.args...)
		} else {
			s.logf("%s: nice(1) not found, started at the default priority", p.name)
		}
	}
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), p.env...)
	// Own process group: a Ctrl-C in the terminal reaches devstack only, and
	// devstack stops the children in order. Should devstack itself die, the
	// kernel sends each child SIGTERM, so none is left running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	var out io.Writer = logFile
	if !s.quiet {
		out = &prefixWriter{s: s, prefix: fmt.Sprintf("[%s] ", p.name), file: logFile}
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", p.name, err)
	}
	s.setRunning(p.name, cmd)
	return cmd, nil
}

func (s *supervisor) stop(p proc, cmd *exec.Cmd, exited <-chan error) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		s.logf("%s stopped (%v)", p.name, exitReason(err))
	case <-time.After(p.stopGrace):
		s.logf("%s did not stop within %v; killing it", p.name, p.stopGrace)
		_ = cmd.Process.Kill()
		<-exited
	}
}

// wait blocks until every supervised process has stopped.
func (s *supervisor) wait() { s.wg.Wait() }

func exitReason(err error) string {
	if err == nil {
		return "exit 0"
	}
	return err.Error()
}

// prefixWriter copies a child's output to the terminal, each line prefixed
// with the child's name, and to the child's log file.
type prefixWriter struct {
	s      *supervisor
	prefix string
	file   io.Writer
	buf    []byte
}

func (w *prefixWriter) Write(b []byte) (int, error) {
	_, _ = w.file.Write(b)
	w.buf = append(w.buf, b...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.s.mu.Lock()
		_, _ = w.s.out.Write(append([]byte(w.prefix), w.buf[:i+1]...))
		w.s.mu.Unlock()
		w.buf = w.buf[i+1:]
	}
	return len(b), nil
}

// maxLastLine is how much of a log file's end lastLine reads.
const maxLastLine = 500

// fileSize is f's size now (0 when it cannot be read).
func fileSize(f *os.File) int64 {
	st, err := f.Stat()
	if err != nil {
		return 0
	}
	return st.Size()
}

// lastLine returns the last non-empty line of the log file at path written
// after offset from (at most maxLastLine bytes of it): what a process that
// just exited printed last, read back from its log rather than copied on
// the way there, so that quiet children keep writing to the file directly.
func lastLine(path string, from int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	size := fileSize(f)
	start := max(from, size-maxLastLine-1)
	if start >= size {
		return ""
	}
	b := make([]byte, size-start)
	n, _ := f.ReadAt(b, start)
	lines := bytes.Split(bytes.TrimSpace(b[:n]), []byte("\n"))
	return string(bytes.TrimSpace(lines[len(lines)-1]))
}
