// Package aggregatetest tests a service's aggregate and commands as
// given/when/then scenarios ([Kit]) on the memory provider, through the
// repository's Execute and Create: the events a scenario is given are
// appended and restored as a restart would, so handlers, codec and
// validation all take part.
//
// It is for users of the repository; the suite a provider runs is package
// repositorytest.
package aggregatetest
