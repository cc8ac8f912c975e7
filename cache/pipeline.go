package cache

import (
	"context"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Pipeline runs a sequence of Updates, building each transaction while
// the previous one commits: a first sync's apply spends about as long in
// its own code as badger spends writing, and on two cores the two can
// overlap. Each Update is still one all-or-nothing badger transaction, as
// with Store.Update.
//
// How: badger makes a new transaction wait until every commit before it
// is written (its read timestamp must see them), so the transaction of
// Update k+1 is opened just before commit k is sent, and fn k+1 runs
// while commit k is written. Such a speculative transaction does not see
// commit k; badger's conflict detection covers what it read (a key
// written by commit k makes it fail with ErrConflict), and anything that
// went wrong on a speculative transaction is redone as a plain
// Store.Update once commit k is done, so callers see the same results as
// a sequence of Store.Updates. The audit sequence of a run is carried from
// one transaction of the pipeline to the next in memory (a speculative
// transaction reading rs/<run> would always conflict with the previous
// one): a run's audit list must not be written by anything else while a
// pipeline writes it, which holds for a sync's own run.
//
// A Pipeline is used by one goroutine; Wait must be called at the end.
type Pipeline struct {
	s *Store
	// next is the transaction opened just before the commit in flight was
	// sent (speculative), for the next Update.
	next     *badger.Txn
	inflight *pending
	// auditSeq: the last audit seq per run given out by the pipeline's
	// transactions (nil: read it from the store).
	auditSeq map[uint64]uint64
	err      error
}

// pending is a commit in flight.
type pending struct {
	ctx       context.Context
	fn        func(*Tx) error
	committed func()
	done      chan error
}

// NewPipeline starts a pipeline of updates.
func (s *Store) NewPipeline() *Pipeline { return &Pipeline{s: s} }

// Update runs fn in a new transaction and sends its commit without
// waiting for it; committed (may be nil) is called on the caller's
// goroutine, from a later Update or from Wait, once the transaction is
// committed. fn may run again, as with Store.Update, so it must be safe to
// repeat. The error is fn's, or a failed earlier commit's; after an error
// the pipeline refuses further updates.
func (p *Pipeline) Update(ctx context.Context, fn func(tx *Tx) error, committed func()) error {
	if p.err != nil {
		return p.err
	}
	if err := ctx.Err(); err != nil {
		p.fail(fmt.Errorf("store update: %w", err))
		return p.err
	}
	txn, speculative := p.next, p.next != nil
	p.next = nil
	if txn == nil {
		txn = p.s.db.NewTransaction(true)
	}
	tx := &Tx{s: p.s, txn: txn, now: time.Now().UTC(), assigned: map[uint64]bool{}, auditSeq: cloneSeq(p.auditSeq)}
	err := fn(tx)
	if err == nil {
		err = tx.finish()
	}
	if err != nil {
		// Whatever fn met (a name taken, a transaction too big, its own
		// error) may come from the snapshot that missed the commit in
		// flight, and Store.Update knows the fallbacks: redo fn there, once
		// the commit in flight is settled.
		txn.Discard()
		p.s.invalidate(tx.ids, tx.names)
		if _, err := p.settle(); err != nil {
			return err
		}
		return p.plain(ctx, fn, committed)
	}
	// Opened before the commit below is sent, so it need not wait for it.
	// It does wait for the commit in flight, which it must see.
	next := p.s.db.NewTransaction(true)
	redone, err := p.settle()
	if err != nil || (speculative && redone) {
		next.Discard()
		txn.Discard()
		p.s.invalidate(tx.ids, tx.names)
		if err != nil {
			return err
		}
		// The previous update was redone after this one was built on a
		// snapshot without it, with audit seqs following its first try:
		// redo this one plainly too.
		return p.plain(ctx, fn, committed)
	}
	p.auditSeq = tx.auditSeq
	p.send(ctx, tx, fn, committed)
	p.next = next
	return nil
}

// send starts the commit of tx. The commit holds writeMu shared like
// Store.Update's, until badger reports it written.
func (p *Pipeline) send(ctx context.Context, tx *Tx, fn func(*Tx) error, committed func()) {
	d := &pending{ctx: ctx, fn: fn, committed: committed, done: make(chan error, 1)}
	p.inflight = d
	s := p.s
	s.writeMu.RLock()
	if err := s.brokenErr(); err != nil {
		s.writeMu.RUnlock()
		tx.txn.Discard()
		d.done <- err
		return
	}
	ids, names := tx.ids, tx.names
	tx.txn.CommitWith(func(err error) {
		s.writeMu.RUnlock()
		// As soon as the commit is visible, not when the caller next
		// looks: no reader may be served the old state of a user after it.
		s.invalidate(ids, names)
		d.done <- err
	})
}

// settle waits for the commit in flight. A commit that failed (a
// conflict with the commit before it, a transaction too big, an I/O
// error) is redone with Store.Update, and the pipeline starts afresh:
// the audit sequence is read from the store again.
func (p *Pipeline) settle() (redone bool, err error) {
	d := p.inflight
	if d == nil {
		return false, nil
	}
	p.inflight = nil
	if err := <-d.done; err != nil {
		redone = true
		p.auditSeq = nil
		if err := p.s.Update(d.ctx, d.fn); err != nil {
			p.fail(err)
			return true, err
		}
	}
	if d.committed != nil {
		d.committed()
	}
	return redone, nil
}

// plain runs fn with Store.Update, nothing being in flight; the next
// update of the pipeline reads the audit sequence from the store.
func (p *Pipeline) plain(ctx context.Context, fn func(*Tx) error, committed func()) error {
	p.auditSeq = nil
	if err := p.s.Update(ctx, fn); err != nil {
		return err
	}
	if committed != nil {
		committed()
	}
	return nil
}

// Wait waits for the commit in flight (calling its committed) and ends
// the pipeline. It returns the first error the pipeline met.
func (p *Pipeline) Wait() error {
	if p.next != nil {
		p.next.Discard()
		p.next = nil
	}
	if _, err := p.settle(); err != nil {
		return err
	}
	return p.err
}

func (p *Pipeline) fail(err error) {
	if p.err == nil {
		p.err = err
	}
}

func cloneSeq(m map[uint64]uint64) map[uint64]uint64 {
	if m == nil {
		return nil
	}
	out := make(map[uint64]uint64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
