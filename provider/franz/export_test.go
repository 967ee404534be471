package franz

import (
	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/provider/kafkagroup"
)

// Hooks for the tests of package franz_test.

// StayOut makes the member leave the group once it has lost its
// partitions, instead of rejoining.
func StayOut(m provider.Member) { m.(*member).stayOut.Store(true) }

// GroupMetadata returns the member's generation and member id now.
func GroupMetadata(m provider.Member) (generation int32, memberID string) {
	mm := m.(*member)
	mm.mu.Lock()
	defer mm.mu.Unlock()
	id, gen := mm.gcl.GroupMetadata()
	return gen, id
}

// UseGroupMetadata makes the member's transactions send generation and
// memberID instead of its own.
func UseGroupMetadata(m provider.Member, generation int32, memberID string) {
	m.(*member).metadataOverride.Store(&kafkagroup.Metadata{Generation: generation, MemberID: memberID})
}
