//go:build race

package auth

// raceEnabled: the race detector slows argon2id about tenfold.
const raceEnabled = true
