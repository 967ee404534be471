// Package consume is the read side's toolkit over a [provider.Provider]:
// what a projection or any other reader of the event log uses, apart from the
// driver contract that package provider is.
//
// [Stream] reads a provider's partitions in batches in one of three modes
// ([Replay], [ReplayThenFollow], [Live]), tells when the replay part is done
// and drops the library's control records; [EachRecord] turns a per-record
// handler into a Stream (or [provider.Provider.Read]) callback that retries a
// record the handler fails on and then stops or dead-letters it, as
// [Failures] says. Package projection runs on both.
package consume
