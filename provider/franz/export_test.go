package franz

import (
	"sync"
	"sync/atomic"

	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/provider/kafkagroup"
)

// Hooks for the tests of package franz_test, on the seams of seams.go.

// hooks is what the tests made of one member.
type hooks struct {
	stayOut          atomic.Bool                         // after losing its partitions, the member leaves instead of rejoining
	metadataOverride atomic.Pointer[kafkagroup.Metadata] // sent instead of the group client's
}

var memberHooks sync.Map // *member → *hooks, once a test set one

func hooksOf(m provider.Member) *hooks {
	h, _ := memberHooks.LoadOrStore(m.(*member), new(hooks))
	return h.(*hooks)
}

func init() {
	seamStayOut = func(m *member) bool {
		h, ok := memberHooks.Load(m)
		return ok && h.(*hooks).stayOut.Load()
	}
	seamMetadata = func(m *member) *kafkagroup.Metadata {
		if h, ok := memberHooks.Load(m); ok {
			return h.(*hooks).metadataOverride.Load()
		}
		return nil
	}
}

// StayOut makes the member leave the group once it has lost its
// partitions, instead of rejoining.
func StayOut(m provider.Member) { hooksOf(m).stayOut.Store(true) }

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
	hooksOf(m).metadataOverride.Store(&kafkagroup.Metadata{Generation: generation, MemberID: memberID})
}
