module github.com/rehydrate/rehydrate/examples

go 1.26.0

replace (
	github.com/rehydrate/rehydrate => ..
	github.com/rehydrate/rehydrate/internal => ../internal
	github.com/rehydrate/rehydrate/internal/kafkatest => ../internal/kafkatest
	github.com/rehydrate/rehydrate/observe/prom => ../observe/prom
	github.com/rehydrate/rehydrate/observe/tracing => ../observe/tracing
	github.com/rehydrate/rehydrate/provider/franz => ../provider/franz
	github.com/rehydrate/rehydrate/provider/kafka => ../provider/kafka
)

require (
	github.com/go-chi/chi/v5 v5.5.0
	github.com/jackc/pgx/v5 v5.13.0
	github.com/prometheus/client_golang v1.25.0
	github.com/rehydrate/rehydrate v0.1.0
	github.com/rehydrate/rehydrate/internal/kafkatest v0.1.0
	github.com/rehydrate/rehydrate/observe/prom v0.1.0
	github.com/rehydrate/rehydrate/observe/tracing v0.1.0
	github.com/stretchr/testify v1.12.1
	github.com/twmb/franz-go/pkg/kfake v0.0.0-20260918054303-01f206a7e32c
	go.opentelemetry.io/otel v1.47.0
)

require (
	github.com/jackc/pgpassfile v1.0.0 // indirect
	github.com/jackc/pgservicefile v0.0.0-20240606120523-5a60cdf6a761 // indirect
	github.com/jackc/puddle/v2 v2.2.3 // indirect
	golang.org/x/sync v0.23.0 // indirect
	golang.org/x/text v0.42.0 // indirect
)

require (
	github.com/beorn7/perks v1.0.1 // indirect
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/confluentinc/confluent-kafka-go/v2 v2.11.1 // indirect
	github.com/go-logr/logr v1.4.4 // indirect
	github.com/go-logr/stdr v1.2.2 // indirect
	github.com/klauspost/compress v1.20.3 // indirect
	github.com/munnerz/goautoneg v0.0.0-20191010083416-a7dc8b61c822 // indirect
	github.com/pierrec/lz4/v4 v4.1.33 // indirect
	github.com/prometheus/client_model v0.6.3 // indirect
	github.com/prometheus/common v0.72.0 // indirect
	github.com/prometheus/procfs v0.22.0 // indirect
	github.com/rehydrate/rehydrate/projection/postgres v0.1.0
	github.com/rehydrate/rehydrate/provider/franz v0.1.0
	github.com/rehydrate/rehydrate/provider/kafka v0.1.0 // indirect
	github.com/rehydrate/rehydrate/provider/kafkaclient v0.1.0
	github.com/twmb/franz-go v1.22.3 // indirect
	github.com/twmb/franz-go/pkg/kadm v1.20.0 // indirect
	github.com/twmb/franz-go/pkg/kmsg v1.15.1 // indirect
	github.com/vmihailenco/msgpack/v5 v5.4.1 // indirect
	github.com/vmihailenco/tagparser/v2 v2.0.0 // indirect
	go.opentelemetry.io/auto/sdk v1.2.1 // indirect
	go.opentelemetry.io/otel/log v1.47.0 // indirect
	go.opentelemetry.io/otel/metric v1.47.0 // indirect
	go.opentelemetry.io/otel/trace v1.47.0 // indirect
	go.yaml.in/yaml/v3 v3.0.5 // indirect
	golang.org/x/sys v0.48.0 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)

replace github.com/rehydrate/rehydrate/projection/postgres => ../projection/postgres

replace github.com/rehydrate/rehydrate/provider/kafkaclient => ../provider/kafkaclient
