package repository

import (
	"encoding/binary"
	"errors"
	"fmt"
	"iter"

	"github.com/rehydrate/rehydrate/snapshot"
)

// snapshotEntry is one aggregate in a snapshot's data: the repository's
// encoding, which the snapshot store carries without reading it.
type snapshotEntry struct {
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

// appendEntry appends e's encoding to buf: uvarint len(ID), ID, uvarint
// Version, varint Offset, one flags byte (1: deleted, 2: another type's
// id), uvarint len(State), State (for another type's id: its type name).
func appendEntry(buf []byte, e snapshotEntry) []byte {
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

// snapshotEntries decodes the entries of data, a snapshot's Data, in order.
// An entry's ID and State share data's memory. On malformed data it yields
// an error wrapping snapshot.ErrCorrupt and stops.
func snapshotEntries(data []byte) iter.Seq2[snapshotEntry, error] {
	return func(yield func(snapshotEntry, error) bool) {
		for n := 0; len(data) > 0; n++ {
			e, rest, err := decodeEntry(data)
			if err != nil {
				yield(snapshotEntry{}, fmt.Errorf("%w: entry %d: %v", snapshot.ErrCorrupt, n, err))
				return
			}
			data = rest
			if !yield(e, nil) {
				return
			}
		}
	}
}

func decodeEntry(data []byte) (snapshotEntry, []byte, error) {
	var e snapshotEntry
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
