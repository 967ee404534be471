package memory_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/provider/memory"
	"github.com/rehydrate/rehydrate/provider/providertest"
)

func TestConformance(t *testing.T) {
	providertest.Run(t, providertest.Harness{
		New: func(t *testing.T, partitions int) provider.Provider {
			p, err := memory.New(partitions)
			require.NoError(t, err)
			return p
		},
		Compact: func(t *testing.T, p provider.Provider) { p.(*memory.Provider).Compact() },
	})
}

func TestNewRefusesNoPartitions(t *testing.T) {
	_, err := memory.New(0)
	require.EqualError(t, err, "memory: 0 partitions: need at least 1")
}
