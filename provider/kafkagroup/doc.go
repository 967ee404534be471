// Package kafkagroup is the client-neutral group member of the Kafka
// providers, for provider implementers: applications use provider/kafka or
// provider/franz and never this package.
//
// A member keeps its ownership in a Table (which partitions it owns, the
// appends in flight on each that a revocation waits for, the partitions
// whose last commit has an unknown outcome) and appends through Lanes: its
// transactional producers, the queue of appends they take from, the steps
// of a fenced transaction and what each failure means for the appends. A
// Kafka client sits behind Client and Producer, the few calls the lanes
// make (initialise a producer, begin, produce, send the offsets that carry
// the fence, commit, abort; read the member's group metadata; classify an
// error). Membership itself (joining, the rebalance callbacks, leaving)
// stays with the client, which moves ownership in the Table from its
// callbacks; the course of a JoinGroup around the client's calls is Join
// (the checks and the lanes first, the wait for the first assignment, the
// callbacks held until JoinGroup returned), a provider's open members are
// Members, and ClientID names a member so that others can read its address.
//
// Why a transaction of a member that lost a partition cannot commit, with
// any number of lanes:
//
//  1. The generation check. Every transaction, on whichever lane, sends an
//     offset of each partition it writes (a real offset: the end of what
//     the transaction wrote there, sent after the produce, or, where the
//     producer is a ConcurrentFencer and the member has committed there
//     before, the end of that commit, sent while the records are produced)
//     with the member's group metadata read just before it is sent
//     (Client.Metadata); the group coordinator refuses a member it no
//     longer knows or a generation it has left, and the lane commits only
//     once both the check and every record succeeded. Metadata that names no
//     membership (generation -1, no member id), which a coordinator would
//     accept unchecked, is refused here. Transactions of several lanes
//     overlap, and each is checked on its own: overlapping changes nothing
//     for the check.
//  2. Ownership held through the commit. The coordinator checks membership,
//     not partitions. An append counts as in flight on its partitions from
//     its admission until its outcome is decided, whichever lane runs it; a
//     revocation makes the partitions not owned (new appends fail at once),
//     waits for every append in flight on them, and only then lets the
//     client give them up. A batch still queued when its partitions are
//     revoked is refused before anything of it is sent.
//  3. Late initialisations. Transactional ids are the group's, the
//     instance's and the lane's (TxIDs), never a partition's: an instance
//     that initialises its producers late fences its own earlier producers
//     and no other member's. An instance that restarts under the same name
//     ends what its predecessor left open when it starts. With static
//     membership (group.instance.id equal to the instance name) the
//     coordinator answers the predecessor's metadata with
//     FENCED_INSTANCE_ID, which is ClassRefused like an unknown member. A
//     static rejoin may keep the generation: what fences is the member id,
//     which the coordinator replaces at every join without one (a restart,
//     or a client replaced after a fence: MayRejoin); the member owns
//     nothing from the lost revocation until the new client's assignment,
//     and every transaction reads the client's metadata afresh.
//  4. The takeover. A transaction that passed the check may still commit
//     late (its commit timed out, its member was dropped just after the
//     check); its offsets are pending at the coordinator until it ends. A
//     new owner reads committed offsets with require_stable, which the
//     coordinator answers only once no transaction has offsets pending for
//     the partitions, and waits until the last stable offsets reach them
//     and the ends of the partitions (no transaction open there, not even
//     one that never sent its offsets: Table.Stable). A dead instance's
//     open transaction would hold that wait for a whole transaction
//     timeout: after FenceAfter, the new owner initialises the
//     transactional ids of the instances that last committed on the topic
//     and are no members now, which aborts what they left open (Leavers,
//     fence.go). Fencing loses nothing: an initialisation never undoes a
//     commit, and only a commit acknowledges an append.
//
// A member joins only a group of its own topic: before it joins, and again
// once its first assignment has come, it describes the group and refuses it
// (Shared, provider.ErrGroupShared) when live members are on other topics, a
// second service pointed at the group by mistake. The check before the join
// comes before the member's producers are initialised, so a refused member
// touches nothing of the group; the check after it catches most of two
// services that start at the same moment. It is a check, not a fence: Shared
// says what it does not cover, and why Kafka is not made to enforce it.
//
// Several lanes may have transactions open on one partition at once (a
// read-committed reader then waits for the first); an unknown outcome
// unsettles its partitions, and an append to an unsettled partition waits,
// through any lane, until the lane's replacement producer has settled it, so
// that an append that starts after another returned lands after it, if at
// all.
//
// The package is part of the library's module and imports only the standard
// library, event and provider: provider modules depend on it as they depend
// on provider, and a service that uses neither Kafka provider pulls in
// nothing of it.
package kafkagroup
