// Command devkafka runs an in-memory Kafka-protocol broker (kfake) for
// trying the examples on a machine with neither Docker nor Java: `make run`
// starts it in the background when no Kafka answers and neither can be
// used. Everything it holds is lost when it stops.
//
//	devkafka [-port 9092]
//
// It listens on 127.0.0.1 only, prints the bootstrap address as the last
// line on stdout once it accepts connections, and runs until SIGINT or
// SIGTERM.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/twmb/franz-go/pkg/kfake"
)

func main() {
	port := flag.Int("port", 9092, "port to listen on, on 127.0.0.1")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(*port), kfake.ClusterID("devkafka-in-memory"))
	if err != nil {
		fmt.Fprintf(os.Stderr, "devkafka: %v\n", err)
		os.Exit(1)
	}
	defer c.Close()
	addr := strings.Join(c.ListenAddrs(), ",")
	banner := strings.Repeat("!", 78)
	fmt.Fprintf(os.Stderr, "%s\ndevkafka: an IN-MEMORY Kafka-protocol broker (kfake) listens on %s.\n"+
		"devkafka: nothing it holds survives its restart. Use a real Kafka (make kafka-up) for anything else.\n%s\n",
		banner, addr, banner)
	fmt.Println(addr)
	<-ctx.Done()
	fmt.Fprintln(os.Stderr, "devkafka: stopped; its data is gone")
}
