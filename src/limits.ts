// Every fixed limit of the service, named, with the reason it exists.
// A limit that traffic can reach is enforced where the traffic enters and
// answered with a clear status (INVALID_ARGUMENT or RESOURCE_EXHAUSTED).

/** Identifiers: long enough for UUIDs and composite keys, short enough to index cheaply. */
export const ID_LENGTH_MAX = 128;
/** Identifiers are restricted to characters that are safe in keys, subjects and URLs. */
export const ID_PATTERN = /^[A-Za-z0-9._:-]+$/;
/**
 * Changes an order keeps in its history (GetOrder): the most recent ones; the
 * journal keeps them all. Bounds the order actor's state, since tracking
 * events alone may reach SHIPMENTS_PER_ORDER_MAX × TRACKING_EVENTS_PER_SHIPMENT_MAX.
 */
export const ORDER_HISTORY_MAX = 200;
/** One request moves at most a billion units; sums of such stay far below 2^53. */
export const QUANTITY_MAX = 1_000_000_000;
/** on_hand of one location; bounds the sums kept per SKU well inside a double's exact range. */
export const ON_HAND_MAX = 1_000_000_000_000;
/** Lines per order: bounds the saga's fan-out and the order actor's state. */
export const ORDER_LINES_MAX = 200;
/** SKUs per GetAvailability call: bounds the fan-out of one request. */
export const AVAILABILITY_SKUS_MAX = 1000;
/**
 * Items per ReserveBatch call: bounds one request's fan-out and the events one
 * SKU turn may append for it (1000 reserved events are about 100 KiB), and
 * keeps the answer far below GRPC_MESSAGE_BYTES_MAX.
 */
export const RESERVE_BATCH_ITEMS_MAX = 1000;
/** Stock locations per SKU: the SKU actor scans its levels on every reservation. */
export const LOCATIONS_PER_SKU_MAX = 100;
/** Live (reserved or committed) reservations per SKU: bounds the SKU actor's memory and snapshot. */
export const LIVE_RESERVATIONS_PER_SKU_MAX = 200_000;
/** Ended reservations a SKU remembers so that a retried id returns the same reservation. */
export const ENDED_RESERVATIONS_PER_SKU_MAX = 10_000;
/**
 * Stale entries the expiry heap may carry beyond the number of RESERVED holds
 * before it is rebuilt: rebuilding costs O(live holds), so it runs at most once
 * per that many ended holds (amortised O(1)), and a quiet SKU is not rebuilt on
 * every commit.
 */
export const STALE_EXPIRIES_SLACK = 64;
/** Adjustment idempotency keys a SKU remembers. */
export const ADJUSTMENT_KEYS_PER_SKU_MAX = 10_000;
/** Backorder SKUs may reserve this many units beyond on-hand stock. */
export const BACKORDER_UNITS_MAX = 1_000_000;
/** Shipments per order, returns per order, and tracking events per shipment. */
export const SHIPMENTS_PER_ORDER_MAX = 100;
export const RETURNS_PER_ORDER_MAX = 100;
export const TRACKING_EVENTS_PER_SHIPMENT_MAX = 200;
/** Free text (titles, notes, reasons, descriptions). */
export const TEXT_LENGTH_MAX = 1024;
/** Attributes per SKU, and the length of each key and value. */
export const ATTRIBUTES_MAX = 64;
export const ATTRIBUTE_LENGTH_MAX = 256;
/**
 * Paths in one UpsertSku update_mask: each of the 7 definition fields once plus
 * one per attribute key a SKU may have; a longer mask repeats itself or is not meant,
 * and bounds the violations one request can list.
 */
export const UPDATE_MASK_PATHS_MAX = 7 + ATTRIBUTES_MAX;
/** Page sizes of list calls. */
export const PAGE_SIZE_DEFAULT = 100;
export const PAGE_SIZE_MAX = 500;
/** Reservation and payment time-to-live: at least a second, at most 30 days. */
export const TTL_MS_MIN = 1_000;
export const TTL_MS_MAX = 30 * 24 * 3600 * 1000;
export const RESERVATION_TTL_MS_DEFAULT = 15 * 60 * 1000;
export const PAYMENT_TIMEOUT_MS_DEFAULT = 30 * 60 * 1000;
/** An order's reservations outlive its payment deadline by this much, so payment never races the hold's expiry. */
export const ORDER_RESERVATION_GRACE_MS = 5 * 60 * 1000;

/** Messages waiting in one actor's mailbox; beyond it callers get RESOURCE_EXHAUSTED. */
export const MAILBOX_DEPTH_MAX = 4096;
/** Messages one actor turn takes from its mailbox and persists in one write. */
export const TURN_BATCH_MAX = 512;
/** Turns of one actor whose appends may be in flight at once: the next batch is ready when a sync ends. */
export const PIPELINE_DEPTH_MAX = 4;
/** Appends the journal folds into one durable write (one fsync). */
export const JOURNAL_BATCH_APPENDS_MAX = 4096;
/** Encoded size of one append (events plus snapshot). */
export const JOURNAL_APPEND_BYTES_MAX = 64 * 1024 * 1024;
/** Snapshot once the events since the last snapshot reach this many, or the live state's size if larger (amortised O(1) per event). */
export const SNAPSHOT_EVENTS_MIN = 500;
/**
 * Actors kept in memory by default (QM_ACTIVE_ACTORS_MAX); beyond it the least
 * recently used idle ones are passivated. Sized so that a catalogue touched at
 * random stays well under 512 MiB resident.
 */
export const ACTIVE_ACTORS_MAX = 10_000;
/**
 * At the active-actor bound, this share (in percent of the bound, at least 2)
 * of the least recently used idle actors is passivated at once. One walk from
 * the old end of the registry (a Map in LRU order) first steps over the slots
 * that moving actors to the new end left behind, so one actor per walk made
 * that walk cost about 7% of an activation across 100,000 SKUs; a batch pays
 * it once per many activations.
 */
export const ACTIVE_ACTORS_EVICT_PERCENT = 1;
/**
 * An actor asked again is moved to the new end of the LRU order at most this
 * often. Every move is a delete and a set on the registry Map, and V8 leaves
 * the deleted entry in its bucket chain until the table is rehashed: moving
 * the same few hot actors on every ask made each move walk more of their own
 * dead entries (bench/README "Why a hot Reserve costs more beside 100,000
 * resident actors"; the move was 2-3% of a Zipf reserve). The order is then
 * recency to within this much: idle passivation is at most this late and
 * eviction at the bound takes actors at most this much more recent than the
 * least recent one (ActorSystem.activation argues both). Small against the
 * idle time (60 s by default), large against the gap between a hot actor's
 * asks. A node with a short idle time (bench:compare runs 2 s) uses a quarter
 * of it instead, so passivation is never more than a quarter late.
 */
export const LRU_MOVE_INTERVAL_MS = 1_000;
/** Appends waiting for the journal's next write; beyond it appends get OVERLOADED instead of memory growth. */
export const JOURNAL_QUEUE_APPENDS_MAX = 100_000;
/** Actor wake-ups the timer scheduler dispatches per tick. */
export const WAKEUPS_PER_TICK_MAX = 1000;
/**
 * How deep into the due list the scheduler pages (one page per tick) before
 * it starts again from the earliest; bounds the entries one tick skips over.
 */
export const WAKEUPS_SCAN_DEPTH_MAX = 100_000;
/**
 * Pages one check of a cursor range read (src/journal/lmdb_pages.ts) reads
 * before it gives up and refuses the read as damaged: a range read is
 * bounded by its entry count (an audit chunk, a retention budget), and at the
 * smallest entries a 4 KiB leaf holds about 100, so a sound read of the
 * largest chunk spans a few dozen pages. A longer walk means a cycle or
 * garbage child pointers in a damaged tree.
 */
export const LMDB_PAGES_PER_RANGE_CHECK_MAX = 4096;
/**
 * Entries per sorted run of a cluster node's wake-up index: an insert or
 * delete moves at most this many, and paging to an offset steps over
 * (actors with a wake-up) / this runs. 32 to 512 cost the same within noise
 * (4-7 us of CPU per changed wake-up at 100,000, cache misses more than moves).
 */
export const WAKEUP_INDEX_RUN_ENTRIES_MAX = 128;
/**
 * Actors that other actors' asks (a saga reaching its SKUs) may activate
 * beyond the active-actor bound, in percent of it: outside callers are
 * refused at the bound, so busy order actors filling it can still finish.
 */
export const ACTIVE_ACTORS_HEADROOM_PERCENT = 10;
/** Largest gRPC message accepted. */
export const GRPC_MESSAGE_BYTES_MAX = 4 * 1024 * 1024;
/**
 * How long an order's saga waits for one SKU's answer. Every ask has a
 * deadline: a reply that never came would otherwise hold the order's turn
 * (and every caller queued behind it) for ever. Past it the attempt counts as
 * failed with DEADLINE_EXCEEDED and is retried by the step's policy.
 */
export const SAGA_ASK_TIMEOUT_MS = 5_000;
/**
 * Saga step retry policies (Temporal's defaults for the first interval and
 * the coefficient). A forward step (reserve, commit, ship) has a customer
 * waiting: 8 attempts, about two minutes, then it is parked. A compensation
 * (release, unship, restock) gives stock back: 20 attempts, about an hour.
 */
export const SAGA_RETRY_INITIAL_INTERVAL_MS = 1_000;
export const SAGA_RETRY_BACKOFF_COEFFICIENT = 2;
export const SAGA_STEP_INTERVAL_MAX_MS = 60_000;
export const SAGA_STEP_ATTEMPTS_MAX = 8;
export const SAGA_COMPENSATION_INTERVAL_MAX_MS = 5 * 60_000;
export const SAGA_COMPENSATION_ATTEMPTS_MAX = 20;
/** Longest fault-injection stall (QM_FAULT_DELAYS, tests only): long enough to hold work in flight, short of a test's own deadline. */
export const FAULT_DELAY_MS_MAX = 60_000;
/**
 * Damaged actors the journal remembers so that each is logged once at error
 * level; beyond it damage is only counted (qm_journal_corrupt_reads_total), so
 * a wholly damaged journal cannot grow the set or flood the log.
 */
export const DAMAGED_ACTORS_LOGGED_MAX = 10_000;
/**
 * Damaged actors `qmctl scrub` lists one by one; beyond it they are counted.
 * Enough for any repair by hand; a longer list means restoring the directory.
 */
export const SCRUB_DAMAGED_ACTORS_MAX = 100_000;
/**
 * How long a failed journal commit waits for lmdb-js to report its errno (it
 * arrives with the rejection in practice); after it the appends fail as
 * UNAVAILABLE rather than hold the write loop.
 */
export const JOURNAL_COMMIT_CAUSE_WAIT_MS = 1000;
/**
 * Records scrub reads per cursor pass before it closes the cursor and checks
 * them with exact lookups (a failed lookup resets the read transaction, which
 * an open cursor would not survive). Small enough to hold in memory.
 */
export const SCRUB_CHUNK_RECORDS = 1000;
/**
 * After a failed journal write, less free space than this on the journal's
 * file system means the disk is full (DISK_FULL), whatever errno the write
 * got except EIO, which stops the journal (JOURNAL_FAILED: it may be a failed
 * fdatasync): one LMDB commit of a full batch needs about this much new pages.
 */
export const JOURNAL_DISK_FREE_BYTES_MIN = 1024 * 1024;

// ---- Backup and restore -------------------------------------------------------
/** Bytes of backup file per streamed BackupChunk: far below GRPC_MESSAGE_BYTES_MAX, and small enough that a slow client holds back little server memory. */
export const BACKUP_CHUNK_BYTES_MAX = 256 * 1024;
/** Files in one backup. A data directory holds a handful (the journal, the identity file); this bounds the manifest a restore must trust. */
export const BACKUP_FILES_MAX = 1000;
/** Bytes of a backup's manifest; a restore reads it whole before anything else. */
export const BACKUP_MANIFEST_BYTES_MAX = 1024 * 1024;
/** Free bytes a backup leaves on the data directory's file system after staging its copy there, for the journal's own writes meanwhile. */
export const BACKUP_DISK_RESERVE_BYTES = 64 * 1024 * 1024;
/** Bytes of a file's path inside a backup: what the ustar name field holds, with no extension headers to parse. */
export const BACKUP_PATH_BYTES_MAX = 100;
/**
 * A second SIGTERM/SIGINT within this long of the first is the same request
 * delivered twice (a terminal or supervisor signals the process group and
 * `npm start` forwards it too), not an operator insisting: it is ignored.
 */
export const SIGNAL_REPEAT_IGNORE_MS = 1_000;
/**
 * After the embedded journal failed (an EIO at commit), the node drains its
 * calls in flight and exits; if the drain has not ended within this long it
 * exits anyway: it acknowledges nothing more, and its supervisor restarts it.
 */
export const JOURNAL_FAILED_EXIT_DEADLINE_MS = 10_000;
/** The container health probe's one call: well under Docker's default HEALTHCHECK timeout (30 s). */
export const HEALTH_PROBE_DEADLINE_MS = 3_000;
// The gRPC edge: what one client, or many, may hold of the server. A client
// that opens streams and never reads, or sends bodies it never finishes, must
// cost a bounded amount and be dropped in bounded time; others stay unaffected.

/** Open TCP connections by default (QM_GRPC_CONNECTIONS_MAX); beyond it a new socket is closed at accept. */
export const GRPC_CONNECTIONS_MAX = 1024;
/**
 * Concurrent streams per connection by default (QM_GRPC_STREAMS_PER_CONNECTION_MAX), sent in SETTINGS
 * and enforced by nghttp2 (REFUSED_STREAM): far more than a client pipelines usefully (the benchmark
 * runs 16 per connection), few enough that one connection cannot pin hundreds of buffered calls.
 */
export const GRPC_STREAMS_PER_CONNECTION_MAX = 100;
/** A socket must finish the TLS handshake (under TLS) and send the HTTP/2 preface within this (QM_GRPC_HANDSHAKE_TIMEOUT_MS), or it is closed. */
export const GRPC_HANDSHAKE_TIMEOUT_MS = 10_000;
/** A connection with no open stream for this long gets GOAWAY (QM_GRPC_IDLE_TIMEOUT_MS). */
export const GRPC_IDLE_TIMEOUT_MS = 5 * 60 * 1000;
/**
 * A request body must be complete (END_STREAM) this long after its headers (QM_GRPC_REQUEST_BODY_TIMEOUT_MS),
 * or the stream is reset: every RPC we serve is unary with a small request, so a body still arriving
 * after seconds is a client that holds a buffer open, not a slow upload.
 */
export const GRPC_REQUEST_BODY_TIMEOUT_MS = 10_000;
/**
 * A response that has not moved for this long (QM_GRPC_SEND_STALL_TIMEOUT_MS; the client grants no
 * flow-control window) is reset, which frees its buffer.
 */
export const GRPC_SEND_STALL_TIMEOUT_MS = 20_000;
/**
 * Memory one connection may hold in buffers, in MiB: unfinished request bodies, and separately
 * responses not yet taken by HTTP/2 flow control; a stream that would go over is reset
 * (ENHANCE_YOUR_CALM). Four times the largest message (GRPC_MESSAGE_BYTES_MAX), so large responses
 * to a client that reads pass. nghttp2's own session limit (grpc-node.max_session_memory) is not
 * used: over it, Node tore the whole session down with INTERNAL_ERROR, failing well-behaved calls.
 */
export const GRPC_CONNECTION_MEMORY_MB = 16;
/**
 * Bytes of unfinished request bodies one connection may hold; a stream that goes over is reset
 * (ENHANCE_YOUR_CALM). Room for one largest message plus small calls beside it.
 */
export const GRPC_CONNECTION_PENDING_REQUEST_BYTES_MAX = GRPC_CONNECTION_MEMORY_MB * 1024 * 1024;
/**
 * Bytes of unfinished request bodies all connections together may hold (QM_GRPC_PENDING_REQUEST_MB):
 * the total bound that the per-connection one alone cannot give, since connections × 16 MiB is gigabytes.
 */
export const GRPC_PENDING_REQUEST_BYTES_MAX = 64 * 1024 * 1024;
/**
 * Response bytes one connection may have queued and not yet taken by HTTP/2 flow control. A burst of
 * calls is admitted before any response exists, so the session memory limit alone lets a client that
 * grants no window collect streams × response bytes; a response over this is reset instead
 * (ENHANCE_YOUR_CALM).
 */
export const GRPC_CONNECTION_QUEUED_RESPONSE_BYTES_MAX = GRPC_CONNECTION_MEMORY_MB * 1024 * 1024;
/**
 * Response bytes queued for clients that do not read, all connections together
 * (QM_GRPC_QUEUED_RESPONSE_MB). A response that would go over first resets responses that have not
 * moved for a sweep interval, and is itself reset if that does not make room.
 */
export const GRPC_QUEUED_RESPONSE_BYTES_MAX = 128 * 1024 * 1024;
/** How often the edge sweeps its open streams for the deadlines above; at most this, less when a timeout is short. */
export const GRPC_EDGE_SWEEP_INTERVAL_MS = 1000;
/**
 * Keepalive enforcement, after gRPC core's ping abuse policy: a PING sooner than this after the
 * previous one is a strike (the gRPC default is 5 minutes; 10 s accepts the keepalive settings clients
 * commonly use), and on an idle connection (no stream) every PING within 2 hours is a strike, as
 * gRPC core does when grpc.keepalive_permit_without_calls is 0.
 */
export const GRPC_PING_INTERVAL_MIN_MS = 10_000;
export const GRPC_IDLE_PING_INTERVAL_MIN_MS = 2 * 3600 * 1000;
/** Strikes tolerated before GOAWAY(ENHANCE_YOUR_CALM, "too_many_pings"); a new stream clears them. */
export const GRPC_PING_STRIKES_MAX = 2;
/** The server's own keepalive PING to a connection silent this long, to find dead peers... */
export const GRPC_KEEPALIVE_TIME_MS = 5 * 60 * 1000;
/** ...which must answer within this, or the connection is closed. */
export const GRPC_KEEPALIVE_TIMEOUT_MS = 20_000;

// Authentication and authorization (QM_AUTH_CONFIG, src/security/).
/**
 * Clock difference tolerated between a token's issuer and this node when exp and nbf are checked:
 * NTP keeps hosts within milliseconds, 30 s covers a VM resumed from a pause or a host whose NTP
 * is catching up, and keeps an expired token useful for no more than half a minute.
 */
export const TOKEN_CLOCK_SKEW_S = 30;
/**
 * Verified tokens a node remembers (by the token's text, until it expires), so a caller's repeated
 * token costs a map lookup instead of a signature check. One entry per live caller session; beyond
 * it the least recently used goes first. About 1 KiB each, so 10 MiB at most.
 */
export const TOKEN_CACHE_ENTRIES_MAX = 10_000;
/** Token verifications under way that later calls with the same token wait for instead of verifying again; about the calls one node has in flight. */
export const TOKEN_VERIFICATIONS_SHARED_MAX = 10_000;
/** An authorization value longer than this is refused unparsed: real JWTs are 0.5–2 KiB, and this bounds what a hostile caller makes us decode. */
export const TOKEN_BYTES_MAX = 8 * 1024;
/** Role names a token's `roles` claim may carry; more is a token meant for something else. */
export const TOKEN_ROLES_MAX = 64;
/** A caller's subject (token `sub` or certificate CN) is recorded in logs and the audit trail: bounded like other text. */
export const SUBJECT_LENGTH_MAX = 256;
/**
 * A tenant id is part of every actor id and journal key of its objects, so it
 * is short and plain. Without `/`, which separates the tenant from the kind and
 * the id in an actor id (`sku/acme/ABC-1`, src/security/tenancy.ts), so no
 * tenant and id pair can spell another's.
 */
export const TENANT_LENGTH_MAX = 64;
export const TENANT_PATTERN = /^[A-Za-z0-9_-]+$/;
/** QM_AUTH_CONFIG and its key set are read whole at start and on SIGHUP: a mistaken path (a log file) fails instead of filling memory. */
export const AUTH_FILE_BYTES_MAX = 1024 * 1024;
/** Keys in the key set: a few during a rotation; more is not a key set we were meant to read. */
export const AUTH_KEYS_MAX = 64;
/** Roles and principals in QM_AUTH_CONFIG: each is looked up per call from a map, but is also read and validated on every SIGHUP. */
export const AUTH_ROLES_MAX = 1000;
export const AUTH_PRINCIPALS_MAX = 100_000;
/**
 * Entries of QM_AUTH_CONFIG's `revoked` list: each is a set or map lookup per token verified, but the list is read
 * on every SIGHUP and only grows until the operator prunes entries whose tokens have expired. Tokens live minutes
 * to hours, so thousands of live revocations means something other than revocation is needed (rotate the key).
 */
export const AUTH_REVOKED_MAX = 10_000;
/** A token id (jti) in the revoked list: identity providers use UUIDs or ~32-byte random strings. */
export const TOKEN_ID_LENGTH_MAX = 256;
/** The operator's free-text note on a revocation (a ticket, a reason): kept for people, bounded like other text. */
export const REVOCATION_NOTE_LENGTH_MAX = 1000;
/**
 * One revocation in etcd (a value under /quartermaster/<cluster>/revoked/): an entry of the file's shape is at most
 * about 5 KiB (a 256-character subject, a 1,000-character note, in UTF-8); a larger value is not one, and is ignored
 * unparsed. AUTH_REVOKED_MAX counts etcd's entries and the file's together.
 */
export const REVOCATION_VALUE_BYTES_MAX = 8 * 1024;
/** The name after revoked/ in such a key (a ticket, a jti): bounded like a subject, since nodes keep it and log it. */
export const REVOCATION_KEY_NAME_LENGTH_MAX = 256;
/**
 * Keys read per etcd range request when a node (re-)reads the revoked/ prefix, all pages at one revision: 256 values
 * of at most REVOCATION_VALUE_BYTES_MAX stay within grpc-js's default 4 MiB message, which one read of 10,000 would not.
 */
export const REVOCATION_READ_PAGE_KEYS = 256;
/**
 * How often a cluster node reads the revoked/ prefix afresh and restarts its watch, whatever the watch reported: the
 * watch alone is exact while it lives, and this bounds how long an unnoticed loss of it (a bug of the client, a
 * cancel it did not surface) could leave a stale list. One paged range read per node per period costs etcd nothing.
 */
export const REVOCATION_RESYNC_INTERVAL_MS = 60_000;
/** Pause before a failed (re-)read of the revoked/ prefix is tried again; the last list read stays in force meanwhile. */
export const REVOCATION_RETRY_MS = 1_000;
/**
 * How often a cluster node reads its view of the cluster (members/, drain/, partitions/) afresh and restarts its
 * watch, whatever the watch reported: the backstop for a watch loss the client did not surface. A stale view routes
 * asks to an owner that is gone, or misses a drain, until the next read; three range reads of a few hundred small keys
 * per node per period cost etcd nothing. The same period as REVOCATION_RESYNC_INTERVAL_MS, for the same reason.
 */
export const CLUSTER_VIEW_RESYNC_INTERVAL_MS = 60_000;
/** Pause before a failed re-read of the cluster's view is tried again; the last view read stays in use meanwhile. */
export const CLUSTER_VIEW_RETRY_MS = 1_000;
/**
 * Keys per etcd range request when a node reads its view (members/, drain/, partitions/), all pages at one revision.
 * A partition key is about 85 bytes on the wire, so the 65,536 partitions QM_PARTITIONS allows come to about 5.5 MB:
 * past grpc-js's default 4 MiB message, which refused the one-request read (RESOURCE_EXHAUSTED) and so the node's
 * start. 4,096 keys are about 350 KB, and 65,536 partitions 16 requests.
 */
export const CLUSTER_VIEW_READ_PAGE_KEYS = 4_096;
/** A rate limit above these is a typo (a node answers about 10k calls/s), not a policy. */
export const RATE_PER_SECOND_MAX = 1_000_000;
export const RATE_BURST_MAX = 10_000_000;
// Rate limits (src/security/rate_limit/): token buckets per caller.

/**
 * Buckets one node keeps in memory. A bucket is about 200 bytes, so this is
 * ~20 MiB at most; at the bound a full (idle) bucket goes first, else the one
 * the eviction clock reaches, whose caller then starts again from a full burst.
 */
export const RATE_LIMIT_BUCKETS_MAX = 100_000;
/** Buckets the in-memory store's eviction clock inspects per call: enough to find an idle one, bounded on the hot path. */
export const RATE_LIMIT_EVICTION_SCAN_MAX = 8;
/**
 * How long one Redis refill-and-take may take before the call is answered by
 * the local bucket instead: a slow Redis must not add its latency to every RPC.
 */
export const RATE_LIMIT_REDIS_TIMEOUT_MS = 100;
/** Longest pause between reconnect attempts to an unreachable QM_REDIS_URL (local buckets answer meanwhile). */
export const RATE_LIMIT_REDIS_RECONNECT_MAX_MS = 2_000;
/**
 * Distinct `tenant` label values of qm_rate_limited_total; tenants beyond it
 * count under `_other`. Tenants come from signed tokens and the config, but a
 * metric's cardinality must not depend on an issuer's discipline.
 */
export const RATE_LIMITED_TENANT_LABELS_MAX = 100;
/**
 * How often the idle collector (src/observability/idle_collector.ts) looks at
 * the event loop: often enough that a node's memory falls within seconds of
 * its actors passivating, rarely enough that looking costs nothing.
 */
export const IDLE_GC_CHECK_INTERVAL_MS = 1_000;
/**
 * Busy share of the event loop over one check interval below which the node
 * counts as idle: a full collection pauses the loop (about 100-300 ms for a
 * heap of a few hundred MB), which an idle node does not notice.
 */
export const IDLE_GC_BUSY_SHARE_MAX = 0.02;
/**
 * How long the event loop must have stayed idle (every check interval under
 * IDLE_GC_BUSY_SHARE_MAX) before the idle collector collects. Longer than the
 * 5 s over which V8 measures the allocation rate when it decides, at the end
 * of a full collection, whether to shrink the young generation: collected
 * sooner, the rate still includes the burst, and V8 keeps its semi-spaces
 * (32 MiB of private memory, committed and empty) for good.
 */
export const IDLE_GC_QUIET_MS = 6_000;
/**
 * Actors passivated since the idle collector's last collection that make one
 * worth it even when the heap did not grow: passivation frees memory without
 * allocating, so a node whose actors go idle a minute after its burst (the
 * default QM_ACTOR_IDLE_MS) would keep their state as garbage until the next
 * burst. About 3 MB of heap at about 3,000 bytes an idle SKU actor.
 */
export const IDLE_GC_ACTORS_DROPPED_MIN = 1_000;
/**
 * Growth of the heap since the last idle collection that makes one worth it
 * (the default of QM_IDLE_GC_MIB).
 * Below it V8's own collections keep up; above it, an idle node would hold the
 * garbage of its last burst (passivated actors above all) for good, since V8
 * collects only when JavaScript allocates.
 */
export const IDLE_GC_GARBAGE_MIN_BYTES = 32 * 1024 * 1024;

// Asks forwarded to another node (src/cluster/nats_transport.ts).

/**
 * Asks to one owner gathered into one NATS message per event-loop turn. Each
 * NATS request costs the sender a request object and the owner a reply, and
 * the owner hands the asks of one message to its actors in one turn, so a hot
 * actor group-commits them as it does calls that reach it directly. The reply
 * waits for the slowest ask of its message, which is what bounds a batch: a
 * larger one holds more quick answers behind one slow activation.
 */
export const FORWARDED_ASKS_PER_MESSAGE_MAX = 64;
/**
 * Asks whose deadlines lie further apart than this do not share a message:
 * a message times out at its latest deadline, and an ask whose owner never
 * answers must not wait much past its own.
 */
export const FORWARDED_ASK_DEADLINE_SPREAD_MS = 1_000;
/**
 * After a node refuses a batched message (a node of an older version during a
 * rolling upgrade), asks to it go one per message for this long; then a batch
 * is tried again, so the upgraded node gets batches without a restart here.
 */
export const FORWARDED_ASK_BATCH_RETRY_MS = 60_000;
/** Nodes remembered as refusing batches; member ids come from etcd and are few, so at the bound the memory is simply dropped. */
export const BATCH_REFUSING_NODES_MAX = 1_024;
