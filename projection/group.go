package projection

import (
	"context"
	"errors"
	"sync"

	"github.com/rehydrate/rehydrate/provider"
)

// How readers share a projection, and why a stale one cannot commit.
//
// Readers of one projection join Config.Group through provider.Grouper, the
// membership the writers use, with its cooperative hand-over: the group
// gives each partition to one member at a time, and calls OnRevoked on the
// old owner before OnAssigned on the new one (except when the old owner was
// dropped for not answering, with lost set). A reader only reads; it never
// appends through the member, so the Kafka transaction fencing of writers
// does not protect it. The store does:
//
//   - On assignment, the reader claims the partition: the store gives it a
//     new owner token, larger than any before, and its checkpoint.
//   - Every commit moves the checkpoint from what the reader last stored,
//     and only if the owner token is still the reader's; the store checks
//     both inside the transaction that writes the batch's rows, last, and
//     a claim waits for a commit that has checked the row (its lock).
//
// So once a new owner has claimed a partition, every commit of the old one
// fails with ErrFenced and none of its rows land, whatever the old one
// believes: paused past its session timeout, partitioned from the brokers,
// or not yet told of the revocation. And the new owner starts at the last
// committed checkpoint, which no one else can move any more: each record
// is applied once. The group only decides who should read; the store
// decides who may write.

// runGroup joins the group and serves each assigned partition from its own
// goroutine until the partition is revoked or ctx ends.
func (r *Runner[Tx]) runGroup(outer context.Context) error {
	ctx, cancel := context.WithCancelCause(outer)
	defer cancel(nil)
	var (
		mu      sync.Mutex
		workers = make(map[int32]*worker)
		wg      sync.WaitGroup
	)
	stop := func(ps []int32) {
		for _, p := range ps {
			mu.Lock()
			w := workers[p]
			delete(workers, p)
			mu.Unlock()
			if w == nil {
				continue
			}
			w.cancel()
			<-w.done // its batch under way has ended (finished, within finishBound): the next owner's claim would wait for its commit anyway
			r.mu.Lock()
			delete(r.parts, p)
			r.mu.Unlock()
		}
	}
	member, err := r.cfg.Provider.(provider.Grouper).JoinGroup(ctx, provider.GroupConfig{
		Group:    r.cfg.Group,
		Instance: r.cfg.Instance,
		OnAssigned: func(ps []int32) {
			r.log.Info("projection: partitions assigned", "partitions", ps)
			for _, p := range ps {
				wctx, wcancel := context.WithCancel(ctx)
				w := &worker{cancel: wcancel, done: make(chan struct{})}
				mu.Lock()
				workers[p] = w
				mu.Unlock()
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer close(w.done)
					err := r.serve(wctx, []int32{p})
					switch {
					case wctx.Err() != nil:
						if err != nil && !errors.Is(err, context.Canceled) {
							r.log.Info("projection: partition stopped", "partition", p, "err", err)
						}
					case errors.Is(err, ErrFenced):
						// Another reader claimed it: the group has moved it
						// on, and this reader hears of it next.
					case err != nil:
						cancel(err)
					}
				}()
			}
			r.mu.Lock()
			r.assigned = true
			r.mu.Unlock()
			r.checkCaughtUp()
		},
		OnRevoked: func(ps []int32, lost bool) {
			r.log.Info("projection: partitions revoked", "partitions", ps, "lost", lost)
			stop(ps)
		},
	})
	if err != nil {
		return err
	}
	<-ctx.Done()
	closeErr := member.Close()
	mu.Lock()
	rest := make([]int32, 0, len(workers))
	for p := range workers {
		rest = append(rest, p)
	}
	mu.Unlock()
	stop(rest)
	wg.Wait()
	if err := outer.Err(); err != nil {
		return errors.Join(err, closeErr)
	}
	return errors.Join(context.Cause(ctx), closeErr) // a worker's error
}

type worker struct {
	cancel context.CancelFunc
	done   chan struct{}
}
