package repository_test

import (
	"testing"

	"github.com/rehydrate/rehydrate/provider/memory"
	rt "github.com/rehydrate/rehydrate/repository/repositorytest"
)

func BenchmarkExecuteMemory(b *testing.B) {
	p, err := newMemoryB(6)
	if err != nil {
		b.Fatal(err)
	}
	rt.BenchmarkExecute(b, p)
}

func BenchmarkRestoreMemory1M(b *testing.B) {
	p, err := newMemoryB(6)
	if err != nil {
		b.Fatal(err)
	}
	rt.BenchmarkRestore(b, p, 1_000_000)
}

func newMemoryB(partitions int) (*memory.Provider, error) { return memory.New(partitions) }

func BenchmarkRestoreMemory200k(b *testing.B) {
	p, err := newMemoryB(6)
	if err != nil {
		b.Fatal(err)
	}
	rt.BenchmarkRestore(b, p, 200_000)
}
