package snapshot

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"iter"
	"strconv"
	"strings"
	"time"
)

// Format is the version of the snapshot format this package writes and
// reads: the manifest's fields, the chunking and the entry encoding. A
// snapshot of another format is ignored when loading.
const Format = 1

// ErrCorrupt means a snapshot's bytes are not what its manifest says: a
// chunk is missing or altered, or an entry does not decode.
var ErrCorrupt = errors.New("snapshot: corrupt")

// Entry is one aggregate in a snapshot.
type Entry struct {
	ID      string
	Version uint64
	// Offset is that of the aggregate's last event in the event partition.
	Offset  int64
	Deleted bool
	// OtherType, when set, says the id belongs to an aggregate of that
	// other type on the topic: the entry holds no state, it only keeps the
	// id from being created again by this type.
	OtherType string
	// State is the aggregate's state encoded with the snapshot's codec;
	// empty for a deleted aggregate or another type's id.
	State []byte
}

const (
	flagDeleted   = 1
	flagOtherType = 2 // the state bytes are the other type's name
)

// AppendEntry appends e's encoding to buf: uvarint len(ID), ID, uvarint
// Version, varint Offset, one flags byte (1: deleted, 2: another type's
// id), uvarint len(State), State (for another type's id: its type name).
func AppendEntry(buf []byte, e Entry) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(e.ID)))
	buf = append(buf, e.ID...)
	buf = binary.AppendUvarint(buf, e.Version)
	buf = binary.AppendVarint(buf, e.Offset)
	var flags byte
	if e.Deleted {
		flags |= flagDeleted
	}
	state := e.State
	if e.OtherType != "" {
		flags |= flagOtherType
		state = []byte(e.OtherType)
	}
	buf = append(buf, flags)
	buf = binary.AppendUvarint(buf, uint64(len(state)))
	return append(buf, state...)
}

// Entries decodes the entries of data, a snapshot's Data, in order. An
// entry's ID and State share data's memory. On malformed data it yields an
// error wrapping ErrCorrupt and stops.
func Entries(data []byte) iter.Seq2[Entry, error] {
	return func(yield func(Entry, error) bool) {
		for n := 0; len(data) > 0; n++ {
			e, rest, err := decodeEntry(data)
			if err != nil {
				yield(Entry{}, fmt.Errorf("%w: entry %d: %v", ErrCorrupt, n, err))
				return
			}
			data = rest
			if !yield(e, nil) {
				return
			}
		}
	}
}

func decodeEntry(data []byte) (Entry, []byte, error) {
	var e Entry
	idLen, data, err := uvarint(data, "id length")
	if err != nil {
		return e, nil, err
	}
	if idLen == 0 || idLen > uint64(len(data)) {
		return e, nil, fmt.Errorf("id of %d bytes, %d left", idLen, len(data))
	}
	e.ID, data = string(data[:idLen]), data[idLen:]
	if e.Version, data, err = uvarint(data, "version"); err != nil {
		return e, nil, err
	}
	off, n := binary.Varint(data)
	if n <= 0 {
		return e, nil, errors.New("bad offset")
	}
	e.Offset, data = off, data[n:]
	if len(data) == 0 {
		return e, nil, errors.New("no flags")
	}
	flags := data[0]
	if flags&^(flagDeleted|flagOtherType) != 0 {
		return e, nil, fmt.Errorf("unknown flags %#x", flags)
	}
	e.Deleted, data = flags&flagDeleted != 0, data[1:]
	stateLen, data, err := uvarint(data, "state length")
	if err != nil {
		return e, nil, err
	}
	if stateLen > uint64(len(data)) {
		return e, nil, fmt.Errorf("state of %d bytes, %d left", stateLen, len(data))
	}
	e.State, data = data[:stateLen:stateLen], data[stateLen:]
	if flags&flagOtherType != 0 {
		if len(e.State) == 0 {
			return e, nil, errors.New("another type's id without the type")
		}
		e.OtherType, e.State = string(e.State), nil
	}
	return e, data, nil
}

func uvarint(data []byte, what string) (uint64, []byte, error) {
	v, n := binary.Uvarint(data)
	if n <= 0 {
		return 0, nil, fmt.Errorf("bad %s", what)
	}
	return v, data[n:], nil
}

// manifest is the record that makes a snapshot whole: written after every
// chunk, it names them and their checksum. A snapshot without one (a crash
// mid-write) is ignored.
type manifest struct {
	Format       int       `json:"format"`
	ID           string    `json:"id"`
	Partition    int32     `json:"partition"`
	Offset       int64     `json:"offset"`
	StateVersion uint32    `json:"state_version"`
	Codec        string    `json:"codec"`
	Aggregates   int       `json:"aggregates"`
	Chunks       int       `json:"chunks"`
	Size         int       `json:"size"`
	CRC32C       uint32    `json:"crc32c"`
	Created      time.Time `json:"created"`
	Anchor       *Anchor   `json:"anchor,omitempty"`
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func checksum(data []byte) uint32 { return crc32.Checksum(data, castagnoli) }

// Keys of the snapshot topic. A snapshot's id starts with its offset, so
// that chunks left without a manifest still say how old they are.
const (
	manifestPrefix = "manifest/"
	chunkPrefix    = "chunk/"
)

func newID(offset int64, random uint32) string {
	return fmt.Sprintf("%016x-%08x", offset, random)
}

func manifestKey(id string) string { return manifestPrefix + id }

func chunkKey(id string, i int) string { return chunkPrefix + id + "/" + strconv.Itoa(i) }

// parseKey returns the snapshot id of a key of the snapshot topic, the
// offset it starts with, and the chunk index (-1 for the manifest).
func parseKey(key string) (id string, offset int64, chunk int, ok bool) {
	switch {
	case strings.HasPrefix(key, manifestPrefix):
		id, chunk = key[len(manifestPrefix):], -1
	case strings.HasPrefix(key, chunkPrefix):
		rest := key[len(chunkPrefix):]
		i := strings.LastIndexByte(rest, '/')
		if i < 0 {
			return "", 0, 0, false
		}
		n, err := strconv.Atoi(rest[i+1:])
		if err != nil || n < 0 {
			return "", 0, 0, false
		}
		id, chunk = rest[:i], n
	default:
		return "", 0, 0, false
	}
	hexOffset, _, found := strings.Cut(id, "-")
	off, err := strconv.ParseInt(hexOffset, 16, 64)
	if !found || err != nil || off < 0 {
		return "", 0, 0, false
	}
	return id, off, chunk, true
}

func (m manifest) encode() ([]byte, error) { return json.Marshal(m) }

func parseManifest(data []byte) (manifest, error) {
	var m manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return m, fmt.Errorf("%w: manifest: %v", ErrCorrupt, err)
	}
	if m.Chunks < 0 || m.Size < 0 || m.Offset < 0 || m.Aggregates < 0 {
		return m, fmt.Errorf("%w: manifest: negative count", ErrCorrupt)
	}
	return m, nil
}
