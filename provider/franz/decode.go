package franz

import (
	"encoding/binary"
	"hash/crc32"
	"unsafe"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/rehydrate/rehydrate/event"
)

// decodeRecords decodes what a fetch brought for one partition, from the
// fetch position at on: its records and the position after them. The
// common case is decoded here, straight into event.Records whose keys,
// values and header keys point into the response; everything else goes
// to kgo.ProcessFetchPartition, whose error fp.Err then is. A restore
// spent a third of its CPU in kgo's decoder and most of its allocations
// there (a kgo.Record, a header slice and a string per header per record:
// about 500 MB a million records); this path makes two allocations per
// partition and response.
func decodeRecords(rp *kmsg.FetchResponseTopicPartition, topic string, at int64) (recs []event.Record, next int64, fp kgo.FetchPartition) {
	if recs, next, ok := decodeCommon(rp, at); ok {
		return recs, next, kgo.FetchPartition{Partition: rp.Partition}
	}
	fp, next = kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{
		Offset:         at,
		IsolationLevel: kgo.ReadCommitted(),
		Topic:          topic,
		Partition:      rp.Partition,
	}, rp, decompressor, nil)
	recs = make([]event.Record, len(fp.Records))
	for i, r := range fp.Records {
		recs[i] = event.Record{Key: r.Key, Value: r.Value, Headers: headers(r.Headers), Partition: rp.Partition, Offset: r.Offset}
	}
	return recs, next, fp
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Offsets in a v2 record batch (KIP-98): what decodeCommon reads of its
// header before the records.
const (
	batchLengthAt     = 8  // int32, of what follows it
	batchMagicAt      = 16 // int8
	batchCRCAt        = 17 // uint32, CRC-32C of what follows it
	batchAttrsAt      = 21 // int16
	batchLastDeltaAt  = 23 // int32
	batchNumRecordsAt = 57 // int32
	batchHeaderSize   = 61

	attrCompression = 0x07
	attrControl     = 0x20
)

// decodeCommon decodes a partition of a fetch response when it holds only
// what a healthy topic does: no error, no aborted transaction to filter
// out (read_committed), record batches of magic 2 that parse and check
// (CRC). It reports false for anything else, having kept nothing:
// kgo.ProcessFetchPartition then decodes the partition whole, with its
// handling of every case this one leaves to it.
//
// Its results are kgo's for what it accepts: records at or after at, in
// order, control batches (the commit markers of transactions) skipped;
// next is the position after the last whole batch, the records a
// compaction removed and the markers included; a batch the response cut
// short at its end is left to the next fetch.
func decodeCommon(rp *kmsg.FetchResponseTopicPartition, at int64) ([]event.Record, int64, bool) {
	if rp.ErrorCode != 0 || len(rp.AbortedTransactions) > 0 {
		return nil, 0, false
	}
	in := rp.RecordBatches
	// One slab of records and one of headers for the response, sized by
	// the counts in the batch headers (not yet checked: no more than a
	// record per 8 bytes; a compressed batch may hold more, and append
	// grows the slab then).
	n := 0
	for b := in; len(b) >= batchHeaderSize; {
		length := int(int32(binary.BigEndian.Uint32(b[batchLengthAt:]))) + 12
		if length < batchHeaderSize || length > len(b) {
			break
		}
		n += max(int(int32(binary.BigEndian.Uint32(b[batchNumRecordsAt:]))), 0)
		b = b[length:]
	}
	n = min(n, len(in)/8)
	recs := make([]event.Record, 0, n)
	var hs []event.Header
	decoded := 0
	next := at
	for len(in) > batchMagicAt {
		length := int(int32(binary.BigEndian.Uint32(in[batchLengthAt:]))) + 12
		if length < 12 || length > len(in) {
			break // cut short by the response's size: the next fetch has it
		}
		if in[batchMagicAt] != 2 || length < batchHeaderSize {
			return nil, 0, false
		}
		batch := in[:length]
		in = in[length:]
		if crc32.Checksum(batch[batchAttrsAt:], castagnoli) != binary.BigEndian.Uint32(batch[batchCRCAt:]) {
			return nil, 0, false
		}
		base := int64(binary.BigEndian.Uint64(batch))
		attrs := binary.BigEndian.Uint16(batch[batchAttrsAt:])
		end := base + int64(int32(binary.BigEndian.Uint32(batch[batchLastDeltaAt:]))) + 1
		count := int(int32(binary.BigEndian.Uint32(batch[batchNumRecordsAt:])))
		if count < 0 || end <= base {
			return nil, 0, false
		}
		if end <= next || attrs&attrControl != 0 {
			next = max(next, end)
			continue // wholly before the position, or markers
		}
		raw := batch[batchHeaderSize:]
		if codec := attrs & attrCompression; codec != 0 {
			var err error
			if raw, err = decompressor.Decompress(raw, kgo.CompressionCodecType(codec)); err != nil {
				return nil, 0, false
			}
		}
		for range count {
			var r event.Record
			var ok bool
			if raw, r, hs, ok = decodeRecord(raw, base, hs, max(n-decoded, 1), len(in)); !ok {
				return nil, 0, false
			}
			decoded++
			if r.Offset >= next && r.Offset < end {
				r.Partition = rp.Partition
				recs = append(recs, r)
			}
		}
		if len(raw) != 0 {
			return nil, 0, false
		}
		next = end
	}
	return recs, next, true
}

// decodeRecord decodes the record at the start of in, a v2 record of the
// batch starting at offset base, and returns what follows it. The
// record's headers are appended to hs; when it is full, the next chunk
// holds as many for each of the left records still to decode (records of
// one topic tend to carry the same headers), no more than a header per 2
// bytes of the limit bytes left in the response, or twice the last chunk.
// A record's headers are its own (a full slice) however hs grows later.
func decodeRecord(in []byte, base int64, hs []event.Header, left, limit int) (rest []byte, r event.Record, _ []event.Header, ok bool) {
	length, n := binary.Varint(in)
	if n <= 0 || length < 0 || int64(len(in)-n) < length {
		return nil, r, hs, false
	}
	b, rest := in[n:n+int(length)], in[n+int(length):]
	if len(b) < 1 {
		return nil, r, hs, false
	}
	b = b[1:] // attributes, unused
	var tsDelta, offsetDelta int64
	if tsDelta, b, ok = varint(b); !ok {
		return nil, r, hs, false
	}
	_ = tsDelta
	if offsetDelta, b, ok = varint(b); !ok {
		return nil, r, hs, false
	}
	if r.Key, b, ok = varintBytes(b); !ok {
		return nil, r, hs, false
	}
	if r.Value, b, ok = varintBytes(b); !ok {
		return nil, r, hs, false
	}
	var count int64
	if count, b, ok = varint(b); !ok || count < 0 || count > int64(len(b)) {
		return nil, r, hs, false
	}
	if count > 0 {
		if cap(hs)-len(hs) < int(count) {
			hs = make([]event.Header, 0, max(256, 2*cap(hs), int(count), min(int(count)*left, limit/2)))
		}
		from := len(hs)
		for range count {
			var k, v []byte
			if k, b, ok = varintBytes(b); !ok || k == nil {
				return nil, r, hs, false
			}
			if v, b, ok = varintBytes(b); !ok {
				return nil, r, hs, false
			}
			hs = append(hs, event.Header{Key: unsafe.String(unsafe.SliceData(k), len(k)), Value: v})
		}
		r.Headers = hs[from:len(hs):len(hs)]
	}
	if len(b) != 0 {
		return nil, r, hs, false
	}
	r.Offset = base + offsetDelta
	return rest, r, hs, true
}

// varint reads a zigzag varint, Kafka's as Go's.
func varint(b []byte) (int64, []byte, bool) {
	v, n := binary.Varint(b)
	if n <= 0 {
		return 0, nil, false
	}
	return v, b[n:], true
}

// varintBytes reads bytes prefixed by their varint length, -1 for null
// (nil).
func varintBytes(b []byte) ([]byte, []byte, bool) {
	l, b, ok := varint(b)
	switch {
	case !ok || l < -1 || l > int64(len(b)):
		return nil, nil, false
	case l == -1:
		return nil, b, true
	}
	return b[:l:l], b[l:], true
}
