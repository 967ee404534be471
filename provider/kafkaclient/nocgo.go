//go:build !cgo

package kafkaclient

import (
	"errors"

	"github.com/rehydrate/rehydrate/provider/kafkaconfig"
)

// Names returns the clients this build has, the default first.
func Names() []string { return []string{Franz} }

func newConfluent(kafkaconfig.Config) (Kafka, error) {
	return nil, errors.New("kafkaclient: KAFKA_CLIENT=confluent needs a build with cgo (CGO_ENABLED=1): use franz")
}

func confluentCode(error) (int16, bool) { return 0, false }

func confluentAuthenticationFailed(error) bool { return false }
