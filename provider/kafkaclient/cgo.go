//go:build cgo

package kafkaclient

import (
	"errors"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/rehydrate/rehydrate/provider/kafka"
	"github.com/rehydrate/rehydrate/provider/kafkaconfig"
)

var _ Kafka = (*kafka.Provider)(nil)

// Names returns the clients this build has, the default first.
func Names() []string { return []string{Confluent, Franz} }

func newConfluent(cfg kafkaconfig.Config) (Kafka, error) { return kafka.New(cfg) }

// confluentCode returns the code of a confluent-kafka-go error: librdkafka's
// codes of broker errors are the protocol's; its own are negative.
func confluentCode(err error) (int16, bool) {
	var ke ckafka.Error
	if errors.As(err, &ke) && ke.Code() > 0 {
		return int16(ke.Code()), true
	}
	return 0, false
}

func confluentAuthenticationFailed(err error) bool {
	var ke ckafka.Error
	return errors.As(err, &ke) && (ke.Code() == ckafka.ErrAuthentication || ke.Code() == ckafka.ErrSsl)
}
