package kafkagroup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rehydrate/rehydrate/provider/kafkaconfig"
)

// A member that takes over partitions whose previous owner died (kill -9,
// a lost node) finds the dead instance's last transaction still open: its
// offsets are pending at the group coordinator, and its records hold the
// partitions' last stable offsets back, until the broker aborts it at the
// transaction timeout (and its sweep, up to
// transaction.abort.timed.out.transaction.cleanup.interval.ms later).
// AwaitStable would wait for that. Instead, once the partitions have stayed
// unstable for FenceAfter, the new owner initialises the dead instance's
// transactional ids itself: InitProducerId aborts the open transaction at
// once (or lets one whose commit is already under way complete) and bumps
// the epoch, so that nothing of the old producers can write afterwards.
//
// Which instance: every transaction commits each offset with the
// transactional id of its producer as the offset's metadata, so the
// group's last committed offsets (read without require_stable) name the
// instance that last wrote each partition. Those of the whole topic are
// read, not only of the partitions taken over: the instance whose
// transaction is open may have taken a partition over and died before its
// first commit there, but it committed on the others it owned. Each named
// instance is fenced only when no member of the group is that instance now;
// an instance still in the group is left alone, and if the open
// transaction is someone else's (an instance that died before any commit
// of its own), the takeover waits for the broker to abort it, as before.
//
// Why it is safe: initialising a transactional id never undoes a commit
// (an acknowledged append is committed before it is acknowledged), so it
// loses nothing; what it aborts was never acknowledged. Fencing an
// instance that was not dead after all (paused, cut off) is what the group
// did already: it is no member, and its transactions are refused at the
// generation check. The one cost: an instance restarting under the same
// name at that very moment may have initialised its producers just before,
// and gets them fenced; each lane replaces a fenced producer (ClassFatal),
// and an append of that instance in flight then is refused, not lost.

// FenceAfter is how long AwaitStable waits for partitions to become stable
// before it fences the instances that left them with a transaction open:
// longer than the commit markers of a finished transaction take, far
// shorter than a transaction timeout.
const FenceAfter = time.Second

// fenceEvery is how often AwaitStable fences again while the partitions
// stay unstable: the instance that left a transaction open may have
// committed nothing there since the last owner before it.
const fenceEvery = 5 * time.Second

// Leavers fences, for a member that takes partitions over, the
// transactional ids of the instances that left them with a transaction
// open (see the comment above).
type Leavers struct {
	// Group and Instance are the member's group and instance name; Lanes
	// its number of lanes, taken for the others' (a fleet shares its
	// settings): every lane of an instance is fenced, not only the one
	// named by an offset's metadata.
	Group, Instance string
	Lanes           int
	// Committed returns, of the partitions ids, the metadata of the
	// group's last committed offset (read without require_stable).
	Committed func(ctx context.Context, ids []int32) (map[int32]string, error)
	// Members returns the group's members now.
	Members func(ctx context.Context) ([]Assignment, error)
	// Client makes the producers whose initialisation fences.
	Client Client
	Log    *slog.Logger
}

// Fence fences the instances that last committed one of ids (AwaitStable
// passes every partition of the topic) and are no members of the group
// now, and returns the transactional ids it initialised.
func (lv Leavers) Fence(ctx context.Context, ids []int32) ([]string, error) {
	committed, err := lv.Committed(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("read the committed offsets' metadata: %w", err)
	}
	members, err := lv.Members(ctx)
	if err != nil {
		return nil, fmt.Errorf("describe the group: %w", err)
	}
	var fenced []string
	var errs []error
	for _, txid := range StaleTxIDs(lv.Group, lv.Instance, lv.Lanes, committed, members) {
		p, err := lv.Client.NewProducer(ctx, txid)
		if err != nil {
			lv.Log.Warn("fence the transactional id of an instance that left the group", "transactional_id", txid, "err", err)
			errs = append(errs, fmt.Errorf("fence transactional id %s: %w", txid, err))
			continue
		}
		p.Close()
		fenced = append(fenced, txid)
	}
	if len(fenced) > 0 {
		lv.Log.Info("fenced the transactional ids of instances that left the group with a transaction open", "transactional_ids", fenced, "partitions", ids)
	}
	return fenced, errors.Join(errs...)
}

// StaleTxIDs returns, sorted, the transactional ids (TxIDs, lanes of them
// and any higher lane named) of the instances that committed (partition →
// offset metadata) names, other than self, that are no member of the group
// (members). Metadata that is not a transactional id of group (of a lane
// below kafkaconfig.MaxGroupProducers) is ignored.
func StaleTxIDs(group, self string, lanes int, committed map[int32]string, members []Assignment) []string {
	live := map[string]bool{self: true}
	for _, mem := range members {
		if mem.InstanceID != "" {
			live[mem.InstanceID] = true
		}
		if inst, ok := clientInstance(mem.ClientID); ok {
			live[inst] = true
		}
	}
	count := make(map[string]int) // instance → lanes to fence
	for _, md := range committed {
		inst, lane, ok := parseTxID(group, md)
		if !ok || lane >= kafkaconfig.MaxGroupProducers || live[inst] {
			continue
		}
		count[inst] = max(count[inst], lanes, lane+1)
	}
	var ids []string
	for _, inst := range slices.Sorted(maps.Keys(count)) {
		ids = append(ids, TxIDs(group, inst, count[inst])...)
	}
	return ids
}

// parseTxID returns the instance and lane of txid, one of group's TxIDs.
func parseTxID(group, txid string) (instance string, lane int, ok bool) {
	rest, ok := strings.CutPrefix(txid, group+"-")
	if !ok {
		return "", 0, false
	}
	i := strings.LastIndexByte(rest, '-')
	if i <= 0 {
		return "", 0, false
	}
	lane, err := strconv.Atoi(rest[i+1:])
	if err != nil || lane < 0 || strconv.Itoa(lane) != rest[i+1:] {
		return "", 0, false
	}
	return rest[:i], lane, true
}
