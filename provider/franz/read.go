package franz

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
	"unsafe"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider"
)

// Read fetches on its own rather than through kgo's consumer, because the
// end of a partition is a position, and kgo's consumer does not tell its
// position: a partition may end in offsets that hold no record a consumer
// sees (transaction markers, records of aborted transactions, compaction
// gaps). Each partition of a Fetch response is decoded by decodeRecords
// (kgo.ProcessFetchPartition's results, without its per-record objects in
// the common case), which returns the position after what it decoded,
// markers and aborted records included; that is the position the read
// reports and ends on.
//
// One goroutine fetches (one request per leader broker, at once) and
// decodes each response, its partitions in parallel; the caller's goroutine
// hands the records over to fn. The fetcher fetches and decodes the next
// response while this one is handed over, and no further: the read holds
// two responses at most, each about 2.5 times its size once decoded into
// records (which point into it).
const (
	// fetchWait is how long a broker holds a fetch that has nothing new:
	// how late a follower sees a record at most, and how often a caught-up
	// read looks again.
	fetchWait = 100 * time.Millisecond
	// The fetch sizes bound a read's memory, not its speed: fetching the
	// next response while one is handed over hides the round trip. With
	// 8 MB per partition (64 MB a response), a restore of 1 000 000
	// events from 6 partitions peaked at 700 MB RSS; with 2 MB, at about
	// 200 MB, as fast (the client's defaults are 1 MB and 50 MB).
	fetchMaxBytes          = 16 << 20
	fetchPartitionMaxBytes = 2 << 20
)

// Read implements provider.Provider: direct fetches of the ranges'
// partitions (no consumer group), read-committed, a partition done when its
// position reaches the range's End. Any error that is not transient stops
// the read naming the partition and offset; a read that makes no progress
// for Config.Timeout while no broker answers fails with
// provider.ErrUnavailable. An offset below the log start is an error, never
// a jump to another offset.
func (p *Provider) Read(ctx context.Context, ranges []provider.Range, batchSize int, fn func(provider.Batch) error) error {
	if p.isClosed() {
		return provider.ErrClosed
	}
	if batchSize <= 0 {
		batchSize = p.cfg.BatchSize
	}
	pos := make(map[int32]int64, len(ranges))
	ends := make(map[int32]int64, len(ranges))
	for _, r := range ranges {
		if r.Start < 0 {
			return fmt.Errorf("franz: read %s partition %d: start offset %d out of range", p.cfg.Topic, r.Partition, r.Start)
		}
		if r.Start >= r.End {
			continue
		}
		pos[r.Partition], ends[r.Partition] = r.Start, r.End
	}
	if len(pos) == 0 {
		return nil
	}
	opts, err := clientOpts(p.cfg, p.log)
	if err != nil {
		return err
	}
	// A client of its own: a follower's long polls would otherwise delay
	// a restore's fetches on the shared fetch connection.
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("franz: read %s: client: %w", p.cfg.Topic, err)
	}
	defer cl.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	f := &fetcher{p: p, cl: cl, pos: pos, ends: ends, out: make(chan fetched)}
	go f.run(ctx)
	return p.deliver(ctx, f.out, ends, batchSize, fn)
}

// partFetch is what one fetch brought for a partition: records from the
// position before up to next.
type partFetch struct {
	partition int32
	records   []event.Record
	next      int64
}

type fetched struct {
	parts []partFetch
	err   error
}

// deliver hands the fetched records over in batches until every partition
// reached its end. The batches of one fetch take turns, one batch of each
// partition at a time: a caller applying partitions in parallel (a restore
// spreads them over workers with short queues) then has work for every
// worker at once, where a fetch handed over partition after partition kept
// one worker busy while the others waited.
func (p *Provider) deliver(ctx context.Context, in <-chan fetched, ends map[int32]int64, batchSize int, fn func(provider.Batch) error) error {
	next := make(map[int32]int64, len(ends))
	left := len(ends)
	// One fetch may hold a whole restore: a cancelled read stops between
	// batches, not only between fetches.
	handle := fn
	fn = func(b provider.Batch) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		return handle(b)
	}
	// A run is a partition's records of one fetch still to hand over,
	// ending at the position its last batch reports.
	type run struct {
		partition int32
		records   []event.Record
		next      int64
	}
	for left > 0 {
		var f fetched
		select {
		case <-ctx.Done():
			return ctx.Err()
		case f = <-in:
		}
		if f.err != nil {
			return f.err
		}
		if p.isClosed() {
			return provider.ErrClosed
		}
		var runs []run
		for _, pf := range f.parts {
			end := ends[pf.partition]
			recs := pf.records
			// Records at or past the end belong to a later read.
			if i := slices.IndexFunc(recs, func(r event.Record) bool { return r.Offset >= end }); i >= 0 {
				recs = recs[:i]
			}
			at := min(pf.next, end)
			if len(recs) == 0 && at <= next[pf.partition] {
				continue // nothing moved
			}
			// The fetch's records of the partition are one allocation
			// (decodeRecords); batches are sub-slices of it, each its
			// own to keep.
			runs = append(runs, run{partition: pf.partition, records: recs, next: at})
		}
		for len(runs) > 0 {
			rest := runs[:0]
			for _, r := range runs {
				b := provider.Batch{Partition: r.partition, Records: r.records, Next: r.next}
				if len(r.records) > batchSize {
					b.Records, b.Next = r.records[:batchSize:batchSize], r.records[batchSize].Offset
					r.records = r.records[batchSize:]
					rest = append(rest, r)
				} else {
					next[r.partition] = r.next
					if r.next >= ends[r.partition] {
						left--
					}
				}
				if err := fn(b); err != nil {
					return err
				}
			}
			runs = rest
		}
	}
	return nil
}

// headers reuses kgo's header slice: event.Header has the layout of
// kgo.RecordHeader (TestHeaderLayout checks it), and a restore reads
// millions of records.
func headers(hs []kgo.RecordHeader) []event.Header {
	return unsafe.Slice((*event.Header)(unsafe.Pointer(unsafe.SliceData(hs))), len(hs))
}

var decompressor = kgo.DefaultDecompressor()

// fetcher fetches the partitions not done yet, one fetch after the other,
// and sends what each brought to out.
type fetcher struct {
	p    *Provider
	cl   *kgo.Client
	pos  map[int32]int64 // the fetch position of each partition not done
	ends map[int32]int64
	out  chan fetched

	topicID  [16]byte
	leaders  map[int32]int32 // partition → leader broker, nil when unknown
	progress time.Time       // of the last fetch a broker answered
}

func (f *fetcher) run(ctx context.Context) {
	f.progress = time.Now()
	for backoff := 50 * time.Millisecond; len(f.pos) > 0; {
		parts, err := f.fetch(ctx)
		if err == nil {
			backoff = 50 * time.Millisecond
			if len(parts) == 0 {
				continue
			}
			select {
			case f.out <- fetched{parts: parts}:
				continue
			case <-ctx.Done():
				return
			}
		}
		if ctx.Err() != nil {
			return
		}
		var fatal *fatalError
		if errors.As(err, &fatal) || time.Since(f.progress) >= f.p.cfg.Timeout {
			if !errors.As(err, &fatal) {
				err = fmt.Errorf("franz: read %s: no progress for %v and no broker answers: %w: %w", f.p.cfg.Topic, f.p.cfg.Timeout, provider.ErrUnavailable, err)
			}
			select {
			case f.out <- fetched{err: err}:
			case <-ctx.Done():
			}
			return
		}
		f.p.log.Debug("franz: read: retrying", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff): // a broker or leader moving: retry, bounded by Config.Timeout
		}
		backoff = min(2*backoff, time.Second)
	}
}

// fatalError ends a read at once.
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }
func (e *fatalError) Unwrap() error { return e.err }

// fetch sends one fetch to each leader of the partitions not done and
// returns what they brought. Transient failures are returned as they are,
// others as *fatalError.
func (f *fetcher) fetch(ctx context.Context) ([]partFetch, error) {
	if f.leaders == nil {
		if err := f.lookup(ctx); err != nil {
			return nil, err
		}
	}
	byLeader := make(map[int32][]int32)
	for part := range f.pos {
		leader, ok := f.leaders[part]
		if !ok {
			return nil, &fatalError{fmt.Errorf("franz: read %s partition %d: no such partition", f.p.cfg.Topic, part)}
		}
		byLeader[leader] = append(byLeader[leader], part)
	}
	type answer struct {
		parts []partFetch
		err   error
	}
	answers := make(chan answer, len(byLeader))
	for leader, parts := range byLeader {
		go func() {
			ps, err := f.fetchFrom(ctx, leader, parts)
			answers <- answer{ps, err}
		}()
	}
	var all []partFetch
	var errs []error
	for range byLeader {
		a := <-answers
		all = append(all, a.parts...)
		if a.err != nil {
			errs = append(errs, a.err)
		}
	}
	// Positions move only for what was delivered: a partition whose
	// leader failed is fetched again from where it was.
	for _, pf := range all {
		f.pos[pf.partition] = pf.next
		if pf.next >= f.ends[pf.partition] {
			delete(f.pos, pf.partition)
		}
	}
	// A broker that answers is progress, records or not: a follower of a
	// quiet topic is not stuck.
	if len(all) > 0 || len(errs) == 0 {
		f.progress = time.Now()
	}
	for _, err := range errs {
		var fatal *fatalError
		if errors.As(err, &fatal) {
			return all, err
		}
	}
	if len(errs) > 0 {
		f.leaders = nil // a leader may have moved: look them up again
		if len(all) == 0 {
			return nil, errors.Join(errs...)
		}
	}
	return all, nil
}

// lookup reads the topic's id and partition leaders.
func (f *fetcher) lookup(ctx context.Context) error {
	req := kmsg.NewPtrMetadataRequest()
	t := kmsg.NewMetadataRequestTopic()
	t.Topic = kmsg.StringPtr(f.p.cfg.Topic)
	req.Topics = append(req.Topics, t)
	rctx, cancel := context.WithTimeout(ctx, f.p.cfg.Timeout)
	defer cancel()
	resp, err := req.RequestWith(rctx, f.cl)
	if err != nil {
		return f.clientError(err)
	}
	if len(resp.Topics) != 1 {
		return fmt.Errorf("franz: read %s: metadata of %d topics", f.p.cfg.Topic, len(resp.Topics))
	}
	mt := resp.Topics[0]
	if err := kerr.ErrorForCode(mt.ErrorCode); err != nil {
		if errors.Is(err, kerr.UnknownTopicOrPartition) {
			return &fatalError{fmt.Errorf("franz: read: topic %q does not exist: %w", f.p.cfg.Topic, err)}
		}
		return f.clientError(err)
	}
	f.topicID = mt.TopicID
	f.leaders = make(map[int32]int32, len(mt.Partitions))
	for _, mp := range mt.Partitions {
		if mp.Leader < 0 {
			f.leaders = nil
			return fmt.Errorf("franz: read %s partition %d: no leader: %w", f.p.cfg.Topic, mp.Partition, kerr.LeaderNotAvailable)
		}
		f.leaders[mp.Partition] = mp.Leader
	}
	return nil
}

// clientError makes err fatal unless a retry may succeed.
func (f *fetcher) clientError(err error) error {
	var authErr *kgo.ErrFirstReadEOF
	if errors.Is(err, kerr.SaslAuthenticationFailed) || errors.As(err, &authErr) || isTLSErr(err) {
		// A failed SASL login or TLS handshake: not transient.
		return &fatalError{fmt.Errorf("franz: read %s: %w: %w", f.p.cfg.Topic, provider.ErrUnavailable, err)}
	}
	if classify(err) == classUnavailable {
		return err
	}
	return &fatalError{fmt.Errorf("franz: read %s: %w", f.p.cfg.Topic, err)}
}

// fetchFrom fetches parts from their leader.
func (f *fetcher) fetchFrom(ctx context.Context, leader int32, parts []int32) ([]partFetch, error) {
	req := kmsg.NewPtrFetchRequest()
	req.ReplicaID = -1
	req.MaxWaitMillis = int32(fetchWait.Milliseconds())
	req.MinBytes = 1
	req.MaxBytes = fetchMaxBytes
	req.IsolationLevel = 1 // read_committed
	req.SessionEpoch = -1  // no fetch session: every request names its partitions
	t := kmsg.NewFetchRequestTopic()
	t.Topic = f.p.cfg.Topic
	t.TopicID = f.topicID
	for _, part := range parts {
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition = part
		rp.FetchOffset = f.pos[part]
		rp.CurrentLeaderEpoch = -1
		rp.LogStartOffset = -1
		rp.PartitionMaxBytes = fetchPartitionMaxBytes
		t.Partitions = append(t.Partitions, rp)
	}
	req.Topics = append(req.Topics, t)
	rctx, cancel := context.WithTimeout(ctx, f.p.cfg.Timeout+fetchWait)
	defer cancel()
	kresp, err := f.cl.Broker(int(leader)).Request(rctx, req)
	if err != nil {
		return nil, f.clientError(err)
	}
	resp := kresp.(*kmsg.FetchResponse)
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return nil, f.clientError(err)
	}
	// A partition may come back empty because the response was full:
	// only an answer without any batch proves that none is left.
	anyBatch := false
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			anyBatch = anyBatch || len(rp.RecordBatches) > 0
		}
	}
	// Decoding is most of a read's work besides the caller's: the
	// partitions of a response are decoded at once, on every core, so
	// that the response is ready to hand over sooner (until the first one
	// is, every apply worker of a restore waits).
	type decoded struct {
		rp   *kmsg.FetchResponseTopicPartition
		at   int64
		recs []event.Record
		next int64
		fp   kgo.FetchPartition // its Err
	}
	var ds []decoded
	for _, rt := range resp.Topics {
		for i := range rt.Partitions {
			rp := &rt.Partitions[i]
			if at, ok := f.pos[rp.Partition]; ok {
				ds = append(ds, decoded{rp: rp, at: at})
			}
		}
	}
	var wg sync.WaitGroup
	for i := range ds {
		d := &ds[i]
		wg.Go(func() { d.recs, d.next, d.fp = decodeRecords(d.rp, f.p.cfg.Topic, d.at) })
	}
	wg.Wait()
	var out []partFetch
	var retry error
	for _, d := range ds {
		rp, at, fp, next := d.rp, d.at, d.fp, d.next
		if fp.Err != nil {
			if errors.Is(fp.Err, kerr.OffsetOutOfRange) {
				return out, &fatalError{fmt.Errorf("franz: read %s partition %d at offset %d (log start %d): %w",
					f.p.cfg.Topic, rp.Partition, at, rp.LogStartOffset, fp.Err)}
			}
			var ke *kerr.Error
			if errors.As(fp.Err, &ke) && ke.Retriable {
				retry = fmt.Errorf("franz: read %s partition %d: %w", f.p.cfg.Topic, rp.Partition, fp.Err)
				continue
			}
			return out, &fatalError{fmt.Errorf("franz: read %s partition %d at offset %d: %w", f.p.cfg.Topic, rp.Partition, at, fp.Err)}
		}
		if !anyBatch && rp.LastStableOffset > next {
			// The broker returns the batches from the fetch offset
			// on, up to the last stable offset, and at least one
			// when the response has room: none means that no record
			// is left below it (the tail was compacted away).
			next = rp.LastStableOffset
		}
		if next > at || len(d.recs) > 0 {
			out = append(out, partFetch{partition: rp.Partition, records: d.recs, next: next})
		}
	}
	return out, retry
}
