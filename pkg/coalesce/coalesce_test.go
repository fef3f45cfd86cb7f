package coalesce_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/finsvc/finance/pkg/coalesce"
	"github.com/finsvc/finance/pkg/testkit"
)

var errOdd = errors.New("odd")

// doubler answers each request with its double, and odd ones with an
// error; it records every batch it ran.
type doubler struct {
	mu      sync.Mutex
	batches [][]int
}

func (d *doubler) query(_ context.Context, reqs []int) ([]int, []error) {
	d.mu.Lock()
	d.batches = append(d.batches, slices.Clone(reqs))
	d.mu.Unlock()
	res, errs := make([]int, len(reqs)), make([]error, len(reqs))
	for i, r := range reqs {
		res[i] = 2 * r
		if r%2 == 1 {
			errs[i] = errOdd
		}
	}
	return res, errs
}

func (d *doubler) ran() [][]int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.batches)
}

// waitFor waits until n calls wait for a statement.
func waitFor[Req, Res any](t *testing.T, b *coalesce.Coalescer[Req, Res], n int) {
	t.Helper()
	testkit.EventuallyWithin(t, 10*time.Second, fmt.Sprintf("%d calls waiting", n), func() bool { return b.Waiting() == n })
}

// TestCallsShareAStatement: calls that arrive while the statement slots are
// taken run in one statement once one frees, each with its own answer and
// error.
func TestCallsShareAStatement(t *testing.T) {
	t.Parallel()
	var d doubler
	b := coalesce.New(1, 100, time.Second, d.query)
	release := b.Hold()
	const calls = 20
	errs := make(chan error, calls)
	var wg sync.WaitGroup
	for i := range calls {
		wg.Go(func() {
			got, err := b.Do(context.Background(), i)
			switch {
			case i%2 == 1 && !errors.Is(err, errOdd):
				errs <- fmt.Errorf("call %d: error %v, want errOdd", i, err)
			case i%2 == 0 && (err != nil || got != 2*i):
				errs <- fmt.Errorf("call %d: %d, %v; want %d", i, got, err, 2*i)
			}
		})
	}
	waitFor(t, b, calls)
	release()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if statements, got := b.Stats(); statements != 1 || got != calls {
		t.Errorf("%d statements for %d calls, want 1 for %d", statements, got, calls)
	}
}

// TestAloneRunsAtOnce: a call with no statement running starts its own.
func TestAloneRunsAtOnce(t *testing.T) {
	t.Parallel()
	var d doubler
	b := coalesce.New(1, 100, time.Second, d.query)
	if got, err := b.Do(context.Background(), 4); err != nil || got != 8 {
		t.Fatalf("Do(4) = %d, %v; want 8", got, err)
	}
	if ran := d.ran(); len(ran) != 1 || !slices.Equal(ran[0], []int{4}) {
		t.Fatalf("batches %v, want [[4]]", ran)
	}
}

// TestBatchesAreBounded: past maxBatch waiting calls, the rest go in the
// next statements.
func TestBatchesAreBounded(t *testing.T) {
	t.Parallel()
	var d doubler
	b := coalesce.New(1, 2, time.Second, d.query)
	release := b.Hold()
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Go(func() { _, _ = b.Do(context.Background(), 2*i) })
	}
	waitFor(t, b, 5)
	release()
	wg.Wait()
	var sizes []int
	for _, batch := range d.ran() {
		sizes = append(sizes, len(batch))
	}
	if !slices.Equal(sizes, []int{2, 2, 1}) {
		t.Fatalf("batch sizes %v, want [2 2 1]", sizes)
	}
}

// TestWithdrawnBeforeItsStatement: a call whose context ends while it
// waits returns the context's error, and no statement ever sees it.
func TestWithdrawnBeforeItsStatement(t *testing.T) {
	t.Parallel()
	var d doubler
	b := coalesce.New(1, 100, time.Second, d.query)
	release := b.Hold()
	ctx, cancel := context.WithCancel(context.Background())
	left := make(chan error, 1)
	go func() {
		_, err := b.Do(ctx, 6)
		left <- err
	}()
	waitFor(t, b, 1)
	cancel()
	if err := <-left; !errors.Is(err, context.Canceled) || !errors.Is(err, coalesce.ErrWithdrawn) {
		t.Fatalf("withdrawn call: %v, want context.Canceled and ErrWithdrawn", err)
	}
	waitFor(t, b, 0)
	var wg sync.WaitGroup
	wg.Go(func() { _, _ = b.Do(context.Background(), 8) })
	waitFor(t, b, 1)
	release()
	wg.Wait()
	if ran := d.ran(); len(ran) != 1 || !slices.Equal(ran[0], []int{8}) {
		t.Fatalf("batches %v, want [[8]]: the withdrawn request never sent", ran)
	}

	// A call whose context has already ended, with a slot free, does not
	// start a statement either.
	if _, err := b.Do(ctx, 10); !errors.Is(err, context.Canceled) || !errors.Is(err, coalesce.ErrWithdrawn) {
		t.Fatalf("call with an ended context: %v, want context.Canceled and ErrWithdrawn", err)
	}
	if ran := d.ran(); len(ran) != 1 {
		t.Fatalf("batches %v: a call with an ended context reached a statement", ran)
	}
}

// TestLeftWhileItsStatementRuns: a call whose context ends after its
// statement started returns the context's error without ErrWithdrawn (the
// statement may have done its work), and the statement completes for the
// others.
func TestLeftWhileItsStatementRuns(t *testing.T) {
	t.Parallel()
	started, finish := make(chan struct{}), make(chan struct{})
	b := coalesce.New(1, 100, time.Second, func(_ context.Context, reqs []int) ([]int, []error) {
		close(started)
		<-finish
		return slices.Clone(reqs), make([]error, len(reqs))
	})
	release := b.Hold()
	ctx, cancel := context.WithCancel(context.Background())
	left, stayed := make(chan error, 1), make(chan int, 1)
	go func() {
		_, err := b.Do(ctx, 1)
		left <- err
	}()
	go func() {
		res, _ := b.Do(context.Background(), 2)
		stayed <- res
	}()
	waitFor(t, b, 2)
	go release()
	<-started
	cancel()
	err := <-left
	if !errors.Is(err, context.Canceled) || errors.Is(err, coalesce.ErrWithdrawn) {
		t.Fatalf("call left while its statement ran: %v, want context.Canceled without ErrWithdrawn", err)
	}
	close(finish)
	if res := <-stayed; res != 2 {
		t.Fatalf("the other call got %d, want 2", res)
	}
}
