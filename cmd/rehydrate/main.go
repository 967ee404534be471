// Command rehydrate inspects an event topic written by rehydrate, for
// operators: its partitions and whether it keeps its events, one
// aggregate's history, aggregates as of an offset or a time, a verification
// of the whole log, and the events as they are appended.
//
//	rehydrate [-json] topics
//	rehydrate [-json] history [-from-version N] [-to-version M] [-since TIME|DURATION] ID
//	rehydrate [-json] state [-at OFFSET|TIME] ID
//	rehydrate [-json] state [-at OFFSET|TIME] -partition P
//	rehydrate [-json] verify        exit status 1 when it finds a problem
//	rehydrate [-json] tail
//
// The topic and the brokers come from the KAFKA_* variables the services
// use (KAFKA_BROKERS, KAFKA_TOPIC, TLS and SASL ones, KAFKA_CLIENT). -json
// (before or after the command) prints one JSON object per line; long reads
// report progress on stderr. -h, --help and help print this usage on stdout
// and exit 0.
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

	"github.com/rehydrate/rehydrate/provider"
	kafka "github.com/rehydrate/rehydrate/provider/kafkaclient"
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
  history [-from-version N] [-to-version M] [-since TIME|DURATION] ID
                                 the aggregate's events, decoded; only versions
                                 N to M (both included), only events whose time
                                 is at or after TIME (RFC 3339) or within the
                                 last DURATION (e.g. 90m, 24h)
  state [-at OFFSET|TIME] ID     the aggregate as of a point (default: now)
  state [-at OFFSET|TIME] -partition P
                                 every aggregate of partition P as of a point
  verify                         version gaps, duplicates, foreign partitions,
                                 undecodable records; exit status 1 on any
  tail                           the events appended from now on
-json goes before or after the command; -h, --help or help print this text
configuration: KAFKA_BROKERS, KAFKA_TOPIC and the other KAFKA_* variables
`

// run runs the command line args and returns the exit status: 0 (also for
// -h, --help and help, which print the usage on stdout), 1 when verify found
// problems, 2 on a usage error or a failure.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, open func() (provider.Provider, error)) int {
	// The usage goes to stdout when asked for, to stderr after a mistake:
	// what a user piping --help into less, or a script reading stderr, expects.
	misuse := func() int {
		fmt.Fprint(stderr, usage)
		return 2
	}
	parse := func(fs *flag.FlagSet, args []string) (ok bool, code int) {
		fs.SetOutput(stderr) // the flag package's own "flag provided but not defined"
		fs.Usage = func() {}
		switch err := fs.Parse(args); {
		case errors.Is(err, flag.ErrHelp):
			fmt.Fprint(stdout, usage)
			return false, 0
		case err != nil:
			return false, misuse()
		}
		return true, 0
	}
	flags := flag.NewFlagSet("rehydrate", flag.ContinueOnError)
	asJSON := flags.Bool("json", false, "one JSON object per line")
	if ok, code := parse(flags, args); !ok {
		return code
	}
	if flags.NArg() == 0 {
		return misuse()
	}
	fail := func(err error) int {
		fmt.Fprintln(stderr, "rehydrate:", err)
		return 2
	}
	cmd, rest := flags.Arg(0), flags.Args()[1:]
	if cmd == "help" {
		fmt.Fprint(stdout, usage)
		return 0
	}
	// Each command has its own flags, so that one given to the wrong command
	// is refused rather than ignored.
	sub := flag.NewFlagSet(cmd, flag.ContinueOnError)
	subJSON := sub.Bool("json", false, "one JSON object per line")
	var at *string
	var partition *int
	var fromVersion, toVersion *uint64
	var since *string
	switch cmd {
	case "state":
		at = sub.String("at", "", "an offset (events before it) or an RFC 3339 time (events at or before it)")
		partition = sub.Int("partition", -1, "every aggregate of this partition")
	case "history":
		fromVersion = sub.Uint64("from-version", 0, "the first version to show")
		toVersion = sub.Uint64("to-version", 0, "the last version to show (0: the newest)")
		since = sub.String("since", "", "an RFC 3339 time or a duration back from now: events at or after it")
	case "topics", "verify", "tail":
	default:
		return misuse()
	}
	if ok, code := parse(sub, rest); !ok {
		return code
	}
	var id string
	switch cmd {
	case "history", "state":
		if sub.NArg() == 1 {
			id = sub.Arg(0)
		}
		needID := cmd == "history" || *partition < 0
		if sub.NArg() > 1 || (id != "") != needID {
			return misuse()
		}
	default:
		if sub.NArg() != 0 {
			return misuse()
		}
	}
	var sp span
	if cmd == "history" {
		var err error
		if sp, err = parseSpan(*fromVersion, *toVersion, *since, now()); err != nil {
			return fail(err)
		}
	}
	p, err := open()
	if err != nil {
		return fail(err)
	}
	defer p.Close()
	in := &inspector{p: p, out: stdout, progress: stderr, asJSON: *asJSON || *subJSON}
	switch cmd {
	case "topics":
		err = in.topics(ctx)
	case "history":
		err = in.history(ctx, id, sp)
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
