package audit

// The sync loop: what makes committed batches durable (one fsync covering
// every batch written before it began), how long it waits to group them,
// and what callers that need the disk (Record, Receipt.Durable, the
// exporter's DurableSize) ask of it.

import (
	"context"
	"fmt"
	"time"
)

// syncLoop makes committed batches durable: each fsync covers every batch
// committed before it began.
func (r *Recorder) syncLoop(stop chan struct{}) {
	var last time.Time
	lastCovered := 0
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-r.syncKick:
		case <-timer.C:
		case <-stop:
			timer.Stop()
			r.syncPending() // what the final drain committed
			return
		}
		if wait := r.syncWait(last, lastCovered); wait > 0 {
			timer.Reset(wait) // a kick meanwhile (someone waits) looks again
			continue
		}
		timer.Stop()
		if n := r.syncPending(); n > 0 {
			lastCovered, last = n, time.Now()
		}
	}
}

// syncWait is how long the next fsync should wait. Under load (the last
// fsync covered several commits, or several wait now) the rest of the
// group-commit window since the last fsync, so that one covers more
// commits: an fsync costs the kernel far more than the commits it covers.
// A lone caller waiting is synced at once. With LazyCommits: until the
// oldest event has waited the window while nobody waits, at once when
// someone does (a sync in flight groups what arrives meanwhile).
func (r *Recorder) syncWait(last time.Time, lastCovered int) time.Duration {
	r.syncMu.Lock()
	waiting, waited, since := len(r.unsynced), r.waited, r.unsyncedSince
	r.syncMu.Unlock()
	switch {
	case waiting == 0:
		return 0
	case r.LazyCommits && !waited:
		return r.SyncWindow - time.Duration(time.Now().UnixNano()-since)
	case r.LazyCommits:
		// Someone waits (a denial's Record, a Durable): at once, with
		// every other, as LazyCommits says; a sync in flight batches
		// those that arrive meanwhile.
		return 0
	case lastCovered > 1 || waiting > 1:
		return r.SyncWindow - time.Since(last)
	}
	return 0
}

// DurableSize returns the log's size once every event it counts is on
// disk: what may be sent to a sink, which must never receive an event a
// crash of the machine could take back and give its number to another
// (with LazyCommits an answered call's decision may wait sync_window for
// its fsync). It waits for the sync loop's next fsync (within the window;
// it does not hurry it, so that an exporter under load adds no fsyncs)
// unless the last one covered the log already. 0 while another process
// owns the journal (its owner exports: this one cannot fsync what the
// owner wrote). -1 when the log is not a journal (a store that flushes for
// itself, PostgreSQL's, is asked by the exporter) or nothing is fsynced by
// choice (store.synchronous normal): everything readable may be sent.
func (r *Recorder) DurableSize(ctx context.Context) (int64, error) {
	r.syncMu.Lock()
	switch {
	case r.appendsThrough:
		r.syncMu.Unlock()
		return 0, nil
	case !r.journalSync:
		r.syncMu.Unlock()
		return -1, nil
	}
	size := r.written.Load()
	if size <= r.syncedSize {
		r.syncMu.Unlock()
		return size, nil
	}
	// A receipt of its own, taken by the next fsync: that one begins
	// after every frame counted in size was written.
	rc := newReceipt()
	close(rc.committed)
	if r.unsyncedSince == 0 {
		r.unsyncedSince = time.Now().UnixNano()
	}
	r.unsynced = append(r.unsynced, rc)
	r.syncMu.Unlock()
	r.kick()
	select {
	case <-rc.durable:
	case <-r.done: // the recorder stopped: its last sync may not have taken rc
		select {
		case <-rc.durable:
		default:
			return 0, ErrClosed
		}
	case <-ctx.Done():
		return 0, fmt.Errorf("audit: %w", ctx.Err())
	}
	if rc.syncErr != nil {
		return 0, rc.syncErr
	}
	return size, nil
}

// hurry tells the sync loop that someone waits for an unsynced event.
func (r *Recorder) hurry() {
	r.syncMu.Lock()
	r.waited = true
	r.syncMu.Unlock()
	r.kick()
}

// kick wakes the sync loop.
func (r *Recorder) kick() {
	r.kicks.Add(1)
	select {
	case r.syncKick <- struct{}{}:
	default:
	}
}

// syncLag is how long the oldest event committed and not yet durable has
// waited (0: none).
func (r *Recorder) syncLag() time.Duration {
	r.syncMu.Lock()
	since := r.syncingSince
	if since == 0 {
		since = r.unsyncedSince
	}
	r.syncMu.Unlock()
	if since == 0 {
		return 0
	}
	return time.Duration(time.Now().UnixNano() - since)
}

func (r *Recorder) maxSyncLag() time.Duration {
	if r.MaxSyncLag > 0 {
		return r.MaxSyncLag
	}
	return DefaultMaxSyncLag
}

// syncPending syncs what is committed and returns how many receipts it
// made durable.
func (r *Recorder) syncPending() int {
	r.syncMu.Lock()
	batch := r.unsynced
	r.unsynced, r.waited = nil, false
	r.syncing = len(batch) > 0
	r.syncingSince, r.unsyncedSince = r.unsyncedSince, 0
	sync := r.sync
	covers := r.written.Load() // written before the fsync begins
	r.syncMu.Unlock()
	if len(batch) == 0 {
		return 0
	}
	err := sync()
	r.syncMu.Lock()
	if err == nil {
		r.syncedSize = max(r.syncedSize, covers)
	}
	r.syncing = false
	r.syncingSince = 0
	r.syncIdle.Broadcast()
	r.syncMu.Unlock()
	if err != nil {
		// A failed fsync of the local log poisons it (see syncFailed). A
		// database's failed flush does not: every batch re-reads the log's
		// state under its lock, so the log stays whole; the actions waiting
		// on this flush are denied.
		if r.async == nil {
			r.syncFailed.CompareAndSwap(nil, &err)
		}
		r.log.Error("audit log sync failed: these events may not be on disk; actions waiting for them are denied", "events", len(batch), "err", err)
	}
	for _, rc := range batch {
		rc.syncErr = err
		close(rc.durable)
	}
	if r.OnSync != nil {
		r.OnSync(len(batch), err)
	}
	return len(batch)
}
