package snapshot

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
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
