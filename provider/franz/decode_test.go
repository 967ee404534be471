package franz

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/rehydrate/rehydrate/event"
)

// TestDecodeRecordsMatchesKgo checks decodeRecords against kgo's own
// decoder on random fetch responses: batches with and without compression,
// headers, null keys and values, gaps a compaction left, transactions and
// their markers, aborted transactions, a fetch position inside a batch, a
// response cut short, a corrupted byte. Whatever the response, both give
// the same records, the same position and an error for the same
// responses; and the common case is decoded by decodeCommon, not handed
// to kgo.
func TestDecodeRecordsMatchesKgo(t *testing.T) {
	common := 0
	const runs = 2000
	for seed := range uint64(runs) {
		rng := rand.New(rand.NewPCG(seed, 7))
		rp, at, healthy := randomFetch(t, rng)
		want, wantNext := kgoDecode(rp, at)
		recs, next, fp := decodeRecords(rp, "t", at)
		if _, _, ok := decodeCommon(rp, at); ok {
			common++
		} else {
			assert.False(t, healthy, "seed %d: a healthy response was left to kgo", seed)
		}
		require.Equal(t, want.Err != nil, fp.Err != nil, "seed %d: kgo's error %v, ours %v", seed, want.Err, fp.Err)
		require.Equal(t, wantNext, next, "seed %d: next", seed)
		require.Equal(t, len(want.Records), len(recs), "seed %d: records", seed)
		for i, w := range want.Records {
			r := recs[i]
			require.Equal(t, w.Offset, r.Offset, "seed %d record %d", seed, i)
			require.Equal(t, int32(3), r.Partition)
			require.Equal(t, w.Key, r.Key, "seed %d record %d key", seed, i)
			require.Equal(t, w.Value, r.Value, "seed %d record %d value", seed, i)
			require.Equal(t, len(w.Headers), len(r.Headers), "seed %d record %d headers", seed, i)
			for j, h := range w.Headers {
				require.Equal(t, h.Key, r.Headers[j].Key)
				require.Equal(t, h.Value, r.Headers[j].Value)
			}
		}
	}
	assert.Greater(t, common, runs/3, "the common case was rarely decoded by decodeCommon")
}

func kgoDecode(rp *kmsg.FetchResponseTopicPartition, at int64) (kgo.FetchPartition, int64) {
	return kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{
		Offset: at, IsolationLevel: kgo.ReadCommitted(), Topic: "t", Partition: rp.Partition,
	}, rp, decompressor, nil)
}

// randomFetch is a fetch response of partition 3 and a position to decode
// it from. healthy reports a response without what decodeCommon leaves to
// kgo (aborted transactions, corruption).
func randomFetch(t *testing.T, rng *rand.Rand) (rp *kmsg.FetchResponseTopicPartition, at int64, healthy bool) {
	t.Helper()
	healthy = true
	rp = &kmsg.FetchResponseTopicPartition{Partition: 3}
	var buf []byte
	offset := rng.Int64N(1000)
	first := offset
	for range 1 + rng.IntN(6) {
		var b []byte
		switch rng.IntN(10) {
		case 0: // a transaction's commit marker
			b = encodeBatch(t, rng, offset, 0x30, []kmsg.Record{{Key: []byte{0, 0, 0, 1}, Value: []byte{0, 0, 0, 0, 0, 0}}}, 1)
			offset++
		default:
			attrs := int16(0)
			if rng.IntN(4) == 0 {
				attrs |= 0x10 // transactional
			}
			recs, span := randomRecords(rng)
			b = encodeBatch(t, rng, offset, attrs, recs, span)
			offset += int64(span)
		}
		buf = append(buf, b...)
	}
	if rng.IntN(8) == 0 {
		rp.AbortedTransactions = []kmsg.FetchResponseTopicPartitionAbortedTransaction{{ProducerID: 1, FirstOffset: first}}
		healthy = false
	}
	switch rng.IntN(8) {
	case 0: // cut short at its end, as a full response is
		buf = buf[:rng.IntN(len(buf))]
	case 1: // one corrupted byte
		buf = bytes.Clone(buf)
		buf[rng.IntN(len(buf))] ^= byte(1 + rng.IntN(255))
		healthy = false
	}
	rp.RecordBatches = buf
	rp.HighWatermark, rp.LastStableOffset = offset, offset
	return rp, first + rng.Int64N(offset-first+1), healthy
}

// randomRecords are a batch's records and the offsets it spans: offset
// deltas with gaps, as after compaction.
func randomRecords(rng *rand.Rand) ([]kmsg.Record, int) {
	recs := make([]kmsg.Record, rng.IntN(8))
	delta := 0
	for i := range recs {
		delta += rng.IntN(3) // 0: consecutive
		r := kmsg.Record{OffsetDelta: int32(i + delta), TimestampDelta64: rng.Int64N(1000)}
		if rng.IntN(5) > 0 {
			r.Key = []byte(fmt.Sprintf("key-%d", rng.IntN(100)))
		}
		if rng.IntN(5) > 0 {
			r.Value = bytes.Repeat([]byte{byte(i)}, rng.IntN(300))
		}
		for j := range rng.IntN(8) {
			h := kmsg.Header{Key: fmt.Sprintf("h%d", j)}
			if rng.IntN(4) > 0 {
				h.Value = []byte(fmt.Sprintf("v%d", rng.IntN(1000)))
			}
			r.Headers = append(r.Headers, h)
		}
		recs[i] = r
	}
	span := 1 + delta + len(recs) + rng.IntN(2) // a compaction may remove the last records
	return recs, span
}

// compressors are kgo's, one per codec: none, gzip, snappy, lz4, zstd.
var compressors = func() []kgo.Compressor {
	var cs []kgo.Compressor
	for _, codec := range []kgo.CompressionCodec{kgo.NoCompression(), kgo.GzipCompression(), kgo.SnappyCompression(), kgo.Lz4Compression(), kgo.ZstdCompression()} {
		c, err := kgo.DefaultCompressor(codec)
		if err != nil {
			panic(err)
		}
		cs = append(cs, c)
	}
	return cs
}()

// encodeBatch is a v2 record batch at base of the records, spanning span
// offsets, in a random compression.
func encodeBatch(t *testing.T, rng *rand.Rand, base int64, attrs int16, recs []kmsg.Record, span int) []byte {
	t.Helper()
	var raw []byte
	for _, r := range recs {
		r.Length = 0
		body := r.AppendTo(nil) // with a length of 0: measure, then write again
		r.Length = int32(len(body) - 1)
		raw = r.AppendTo(raw)
	}
	if attrs&0x20 == 0 && len(raw) > 0 {
		if c := compressors[rng.IntN(len(compressors))]; c != nil {
			compressed, codec := c.Compress(new(bytes.Buffer), raw)
			if codec != kgo.CodecNone {
				raw = bytes.Clone(compressed)
				attrs |= int16(codec)
			}
		}
	}
	b := kmsg.RecordBatch{
		FirstOffset: base, PartitionLeaderEpoch: -1, Magic: 2, Attributes: attrs,
		LastOffsetDelta: int32(span - 1), ProducerID: 1, NumRecords: int32(len(recs)), Records: raw,
	}
	out := b.AppendTo(nil)
	binary.BigEndian.PutUint32(out[8:], uint32(len(out)-12))
	binary.BigEndian.PutUint32(out[17:], crc32.Checksum(out[21:], castagnoli))
	return out
}

// TestDecodeRecordsHeadersAreTheirOwn: appending to one record's headers
// never changes another's (they share a slab).
func TestDecodeRecordsHeadersAreTheirOwn(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	recs, span := randomRecords(rng)
	for len(recs) < 2 || len(recs[0].Headers) == 0 || len(recs[1].Headers) == 0 {
		recs, span = randomRecords(rng)
	}
	rp := &kmsg.FetchResponseTopicPartition{Partition: 3, RecordBatches: encodeBatch(t, rng, 0, 0, recs, span)}
	got, _, fp := decodeRecords(rp, "t", 0)
	require.NoError(t, fp.Err)
	second := append([]event.Header(nil), got[1].Headers...)
	_ = append(got[0].Headers, event.Header{Key: "x"})
	assert.Equal(t, second, got[1].Headers)
}
