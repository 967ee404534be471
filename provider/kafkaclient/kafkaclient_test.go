package kafkaclient_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"

	kafka "github.com/rehydrate/rehydrate/provider/kafkaclient"
)

func TestOpen(t *testing.T) {
	cfg := kafka.Config{Brokers: "127.0.0.1:1", Topic: "t"}
	for _, name := range kafka.Names() {
		p, err := kafka.Open(name, cfg)
		require.NoError(t, err, name)
		assert.Equal(t, name, p.Client)
		assert.Equal(t, "t", p.Topic())
		require.NoError(t, p.Close())
	}
	_, err := kafka.Open("sarama", cfg)
	assert.ErrorContains(t, err, `unknown KAFKA_CLIENT "sarama"`)
	t.Setenv("KAFKA_CLIENT", "")
	assert.Equal(t, kafka.Names()[0], kafka.Client(), "the default")
}

func TestCode(t *testing.T) {
	code, ok := kafka.Code(fmt.Errorf("wrapped: %w", kerr.TopicAuthorizationFailed))
	assert.True(t, ok)
	assert.Equal(t, int16(29), code)
	_, ok = kafka.Code(errors.New("no code"))
	assert.False(t, ok)
	assert.True(t, kafka.AuthenticationFailed(kerr.SaslAuthenticationFailed))
}
