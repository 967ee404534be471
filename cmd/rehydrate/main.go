// Command rehydrate inspects an event topic written by rehydrate, for
// operators: its partitions and whether it keeps its events, one
// aggregate's history, aggregates as of an offset or a time, a verification
// of the whole log, and the events as they are appended.
//
//	rehydrate [-json] topics
//	rehydrate [-json] history ID
//	rehydrate [-json] state [-at OFFSET|TIME] ID
//	rehydrate [-json] state [-at OFFSET|TIME] -partition P
//	rehydrate [-json] verify        exit status 1 when it finds a problem
//	rehydrate [-json] tail
//
// The topic and the brokers come from the KAFKA_* variables the services
// use (KAFKA_BROKERS, KAFKA_TOPIC, TLS and SASL ones, KAFKA_CLIENT). -json
// prints one JSON object per line; long reads report progress on stderr.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	kafka "github.com/rehydrate/rehydrate/internal/kafkaclient"
	"github.com/rehydrate/rehydrate/provider"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr, openKafka))
}

// openKafka opens the provider on KAFKA_TOPIC.
func openKafka() (provider.Provider, error) {
	cfg, err := kafka.FromEnv()
	if err != nil {
		return nil, err
	}
	if cfg.Topic == "" {
		return nil, errors.New("KAFKA_TOPIC is not set: which topic?")
	}
	return kafka.New(cfg)
}

const usage = `usage: rehydrate [-json] <command>
  topics                         partitions, offsets, records, retention
  history ID                     the aggregate's events, decoded
  state [-at OFFSET|TIME] ID     the aggregate as of a point (default: now)
  state [-at OFFSET|TIME] -partition P
                                 every aggregate of partition P as of a point
  verify                         version gaps, duplicates, foreign partitions,
                                 undecodable records; exit status 1 on any
  tail                           the events appended from now on
configuration: KAFKA_BROKERS, KAFKA_TOPIC and the other KAFKA_* variables
`

// run runs the command line args and returns the exit status: 0, 1 when
// verify found problems, 2 on a usage error or a failure.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, open func() (provider.Provider, error)) int {
	flags := flag.NewFlagSet("rehydrate", flag.ContinueOnError)
	flags.SetOutput(stderr)
	flags.Usage = func() { fmt.Fprint(stderr, usage) }
	asJSON := flags.Bool("json", false, "one JSON object per line")
	if err := flags.Parse(args); err != nil || flags.NArg() == 0 {
		flags.Usage()
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintln(stderr, "rehydrate:", err)
		return 2
	}
	cmd, rest := flags.Arg(0), flags.Args()[1:]
	sub := flag.NewFlagSet(cmd, flag.ContinueOnError)
	sub.SetOutput(stderr)
	at := sub.String("at", "", "state: an offset (events before it) or an RFC 3339 time (events at or before it)")
	partition := sub.Int("partition", -1, "state: every aggregate of this partition")
	if err := sub.Parse(rest); err != nil {
		return 2
	}
	var id string
	switch cmd {
	case "history", "state":
		if sub.NArg() == 1 {
			id = sub.Arg(0)
		}
		needID := cmd == "history" || *partition < 0
		if (id != "") != needID {
			flags.Usage()
			return 2
		}
	case "topics", "verify", "tail":
		if sub.NArg() != 0 {
			flags.Usage()
			return 2
		}
	default:
		flags.Usage()
		return 2
	}
	p, err := open()
	if err != nil {
		return fail(err)
	}
	defer p.Close()
	in := &inspector{p: p, out: stdout, progress: stderr, asJSON: *asJSON}
	switch cmd {
	case "topics":
		err = in.topics(ctx)
	case "history":
		err = in.history(ctx, id)
	case "state":
		var pt point
		if pt, err = parsePoint(*at); err == nil {
			err = in.state(ctx, id, int32(*partition), pt)
		}
	case "verify":
		var problems int
		if problems, err = in.verify(ctx); err == nil && problems > 0 {
			return 1
		}
	case "tail":
		err = in.tail(ctx)
	}
	if err != nil {
		return fail(err)
	}
	return 0
}
