// Package e2e tests the example services as black boxes: the built
// binaries run as processes against a broker (KAFKA_BROKERS, or an
// in-process kfake broker where it is unset), and are driven over HTTP.
package e2e
