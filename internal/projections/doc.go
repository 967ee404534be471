// Package projections holds the long tests of projections in PostgreSQL on
// a real Kafka (make test-db): readers killed with SIGKILL under a writer's
// load, three readers in a group with one killed, a reader paused past its
// session timeout, poison events. They run when DATABASE_URL and
// PROJECTION_LONG_TESTS=1 are set, KAFKA_BROKERS names the brokers (else
// kfake), and fail under CI=true without them.
package projections
