module github.com/rehydrate/rehydrate/bench

go 1.26.0

replace (
	github.com/rehydrate/rehydrate => ..
	github.com/rehydrate/rehydrate/internal/kafkatest => ../internal/kafkatest
	github.com/rehydrate/rehydrate/provider/franz => ../provider/franz
	github.com/rehydrate/rehydrate/provider/kafka => ../provider/kafka
)

require (
	github.com/confluentinc/confluent-kafka-go/v2 v2.11.1
	github.com/rehydrate/rehydrate v0.1.0
	github.com/rehydrate/rehydrate/internal/kafkatest v0.1.0
	github.com/rehydrate/rehydrate/provider/franz v0.1.0
	github.com/rehydrate/rehydrate/provider/kafka v0.1.0
	github.com/stretchr/testify v1.12.1
	github.com/twmb/franz-go v1.22.3
	gonum.org/v1/plot v0.17.0
)

require (
	github.com/jackc/pgpassfile v1.0.0 // indirect
	github.com/jackc/pgservicefile v0.0.0-20240606120523-5a60cdf6a761 // indirect
	github.com/jackc/puddle/v2 v2.2.3 // indirect
	golang.org/x/sync v0.22.0 // indirect
)

require (
	codeberg.org/go-fonts/liberation v0.5.0 // indirect
	codeberg.org/go-latex/latex v0.2.0 // indirect
	codeberg.org/go-pdf/fpdf v0.11.1 // indirect
	git.sr.ht/~sbinet/gg v0.7.0 // indirect
	github.com/ajstarks/svgo v0.0.0-20211024235047-1546f124cd8b // indirect
	github.com/golang/freetype v0.0.0-20170609003504-e2365dfdc4a0 // indirect
	github.com/jackc/pgx/v5 v5.13.0
	github.com/klauspost/compress v1.20.3 // indirect
	github.com/pierrec/lz4/v4 v4.1.33 // indirect
	github.com/rehydrate/rehydrate/projection/postgres v0.1.0
	github.com/twmb/franz-go/pkg/kadm v1.20.0 // indirect
	github.com/twmb/franz-go/pkg/kfake v0.0.0-20260918054303-01f206a7e32c // indirect
	github.com/twmb/franz-go/pkg/kmsg v1.15.1 // indirect
	github.com/vmihailenco/msgpack/v5 v5.4.1 // indirect
	github.com/vmihailenco/tagparser/v2 v2.0.0 // indirect
	go.yaml.in/yaml/v3 v3.0.5 // indirect
	golang.org/x/image v0.30.0 // indirect
	golang.org/x/text v0.41.0 // indirect
)

replace github.com/rehydrate/rehydrate/projection/postgres => ../projection/postgres
