package sim

import (
	"context"
	"sync"
	"time"
)

// keyEntry is one idempotency key: in flight until res is set.
type keyEntry struct {
	hash    string
	res     *Resource
	done    chan struct{} // closed when the key settles or is released
	expires time.Time
}

// keyStore holds idempotency keys in memory for ttl after their payment
// settled. It is what makes "same key, same request" execute at most once.
type keyStore struct {
	ttl time.Duration
	mu  sync.Mutex
	m   map[string]*keyEntry
}

func newKeyStore(ttl time.Duration) *keyStore {
	return &keyStore{ttl: ttl, m: map[string]*keyEntry{}}
}

// claim takes key for a request fingerprinted by hash. It returns the
// settled resource when the key is known (a replay), ErrKeyReuse when the
// key belongs to another request, or (nil, nil) when the caller now owns the
// key and must call settle or release. While another call holds the key in
// flight, claim waits for it rather than answering 409: the waiter then
// replays its result, or takes the key over if that call gave up without
// executing.
func (k *keyStore) claim(ctx context.Context, key, hash string, now time.Time) (*Resource, error) {
	for {
		k.mu.Lock()
		e, ok := k.m[key]
		if ok && e.res != nil && !now.Before(e.expires) {
			delete(k.m, key)
			ok = false
		}
		if !ok {
			k.m[key] = &keyEntry{hash: hash, done: make(chan struct{})}
			k.mu.Unlock()
			return nil, nil
		}
		if e.hash != hash {
			k.mu.Unlock()
			return nil, ErrKeyReuse
		}
		if e.res != nil {
			r := *e.res
			k.mu.Unlock()
			return &r, nil
		}
		done := e.done
		k.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// settle stores the outcome of a claimed key and wakes its waiters.
func (k *keyStore) settle(key string, res Resource) {
	k.mu.Lock()
	defer k.mu.Unlock()
	e := k.m[key]
	e.res = &res
	e.expires = res.CreatedAt.Add(k.ttl)
	close(e.done)
}

// release gives a claimed key up without an outcome (nothing executed), so
// that a retry with the same key executes.
func (k *keyStore) release(key string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	e := k.m[key]
	delete(k.m, key)
	close(e.done)
}

// restore puts back a key read from the data file unless it has expired.
func (k *keyStore) restore(key, hash string, res Resource, now time.Time) {
	exp := res.CreatedAt.Add(k.ttl)
	if !now.Before(exp) {
		return
	}
	done := make(chan struct{})
	close(done)
	k.mu.Lock()
	defer k.mu.Unlock()
	k.m[key] = &keyEntry{hash: hash, res: &res, done: done, expires: exp}
}

// get returns the settled resource of key, if known and not expired.
func (k *keyStore) get(key string, now time.Time) (Resource, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	e, ok := k.m[key]
	if !ok || e.res == nil || !now.Before(e.expires) {
		return Resource{}, false
	}
	return *e.res, true
}

// expireAll forgets every settled key at once, as if the key retention had
// passed for all of them, and returns how many it dropped. Keys of calls
// still being settled stay: their callers own them.
func (k *keyStore) expireAll() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := 0
	for key, e := range k.m {
		if e.res != nil {
			delete(k.m, key)
			n++
		}
	}
	return n
}

// sweep forgets expired keys and returns how many it dropped.
func (k *keyStore) sweep(now time.Time) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := 0
	for key, e := range k.m {
		if e.res != nil && !now.Before(e.expires) {
			delete(k.m, key)
			n++
		}
	}
	return n
}

// len returns how many keys are held, in flight included.
func (k *keyStore) len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.m)
}
