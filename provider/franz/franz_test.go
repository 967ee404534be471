package franz_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/internal/kafkatest"
	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/provider/franz"
	"github.com/rehydrate/rehydrate/provider/providertest"
	"github.com/rehydrate/rehydrate/repository/repositorytest"
	"github.com/rehydrate/rehydrate/snapshot"
)

func TestConformance(t *testing.T) {
	providertest.Run(t, providertest.Harness{
		New: func(t *testing.T, partitions int) provider.Provider {
			p, err := franz.New(kafkatest.Config(t, partitions, nil))
			require.NoError(t, err)
			return p
		},
		Compact: kafkatest.Compact(func(p provider.Provider) string { return p.(*franz.Provider).Topic() }),
		Unreachable: func(t *testing.T, timeout time.Duration) provider.Provider {
			// Port 1 on loopback: nothing listens, connections are refused.
			p, err := franz.New(franz.Config{Brokers: "127.0.0.1:1", Topic: "nowhere", Timeout: timeout})
			require.NoError(t, err)
			return p
		},
	})
}

func TestRepositorySuite(t *testing.T) {
	repositorytest.Run(t, kafkatest.Topics(franz.New, nil))
}

func TestSnapshotSuite(t *testing.T) {
	repositorytest.RunSnapshots(t, kafkatest.Topics(franz.New, nil), kafkatest.Topics(franz.New, snapshot.TopicConfig()))
}

func TestNewValidates(t *testing.T) {
	_, err := franz.New(franz.Config{})
	require.Error(t, err)
}

func BenchmarkExecuteFranz(b *testing.B) {
	p, err := franz.New(kafkatest.Config(b, 6, nil))
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	repositorytest.BenchmarkExecute(b, p)
}

func BenchmarkRestoreFranz1M(b *testing.B) {
	p, err := franz.New(kafkatest.Config(b, 6, nil))
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	repositorytest.BenchmarkRestore(b, p, 1_000_000)
}
