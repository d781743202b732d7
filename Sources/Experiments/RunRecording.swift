import Episodes
import Foundation
import ResultsStore
import Support

/// A run row being written: begun (or reopened) at the start, fed with what training reports,
/// ended completed, failed or interrupted with its wall time, whatever happens in between.
package struct RunRecording {
  package let store: ResultsStore
  package let id: String
  /// When the run started; a resumed run's includes the time spent before the interruption.
  package let started: Date
  /// This process, as the run's owner in the store.
  package let owner: String

  /// `host:pid:token` of this process: the token (random, 8 hex digits) tells apart two
  /// processes that share a host name and pid, as the pods of one Kubernetes Indexed Job index
  /// do (`<job>-<index>`, pid 1).
  package static let thisProcess = "\(ProcessInfo.processInfo.hostName):\(getpid()):\(String(format: "%08x", UInt32.random(in: 0...UInt32.max)))"

  /// Whether the owner `host:pid[:token]` still runs: on this host with another pid, whether
  /// that pid lives; anywhere else, or with this very host and pid but another token (another
  /// container), unknown (nil), and the lease (`Lease.seconds` since its last heartbeat) decides.
  package static func isAlive(_ owner: String) -> Bool? {
    var parts = owner.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
    var token: String? = nil
    if parts.count >= 3, parts.last!.count == 8, parts.last!.allSatisfy(\.isHexDigit) { token = parts.removeLast() }
    guard parts.count >= 2, let pid = pid_t(parts.removeLast()), parts.joined(separator: ":") == ProcessInfo.processInfo.hostName else { return nil }
    if pid == getpid() { return owner == thisProcess ? true : (token == nil ? true : nil) }
    return kill(pid, 0) == 0 || errno == EPERM
  }

  /// The run's row, committed at once: a new row with the configuration, its parameters,
  /// provenance and `tags`, or the resumed run's row reopened (refused while another live
  /// process works on it; its wall time goes on from the last heartbeat of the sitting before).
  package static func begin(_ plan: RunPlan, data: ExperimentData, tags: [(key: String, value: String)]) throws -> RunRecording {
    let store = try plan.store()
    if case .resume(let id) = plan.mode {
      // The data must be what the run started on (a folder edited since would change what it learns).
      let recorded = try store.run(id).provenance.first { $0.key == "dataset_fingerprint" }?.value
      if let recorded, let now = data.datasetFingerprint, recorded != now {
        throw UserFacingError(
          "run \(id) trained on data with fingerprint \(recorded.prefix(12)), and the data now has \(now.prefix(12)) (\(plan.config.data.folder.map { "the folder \($0) changed" } ?? "the archives changed")); restore the data it started on, or start a new run")
      }
      let earlier = try store.claimRun(id, owner: thisProcess, host: Provenance.current().host, staleAfter: Lease.seconds, isAlive: isAlive)
      store.holdReserve()
      return RunRecording(store: store, id: id, started: Date().addingTimeInterval(-earlier), owner: thisProcess)
    }
    let config = plan.config
    let provenance = Provenance.current()
    var run = NewRun(experiment: config.name, configJSON: config.canonicalJSON, configHash: config.hash, params: recordedSettings(config))
    run.gitCommit = provenance.gitCommit
    run.gitDirty = provenance.gitDirty
    run.datasetFingerprint = data.datasetFingerprint
    run.host = provenance.host
    run.cpu = provenance.cpu
    run.harnessVersion = harnessVersion
    run.swiftVersion = provenance.swiftVersion
    let id = try store.beginRun(run, owner: thisProcess, claim: plan.options.holdsConfigurationClaim ? (config.name, config.hash) : nil)
    plan.options.onRunRecorded?()
    store.holdReserve()
    var folders = data.fingerprints.filter { $0.source != "omniglot" }.map { (key: "dataset.folder", value: "\($0.source) \($0.fingerprint)") }
    if let training = data.trainingFolder, let folder = plan.config.data.folder {
      folders.append((key: "dataset.training_folder", value: "\(folder) \(training.fingerprint)"))
      folders.append((key: "data.held_out", value: training.heldOut.joined(separator: ",")))
    }
    for tag in tags + folders { try store.setTag(run: id, key: tag.key, value: tag.value) }
    return RunRecording(store: store, id: id, started: Date(), owner: thisProcess)
  }

  /// The checkpoint a resumed run goes on from (nil for other modes). The run is claimed
  /// first, so a live owner refuses it; if the checkpoint cannot be read the run is released
  /// as it was: interrupted, resumable, its time kept.
  package func resumable(_ plan: RunPlan) throws -> Resumable? {
    guard case .resume = plan.mode else { return nil }
    do {
      return try Resumable(plan, runID: id)
    } catch {
      try? store.finishRun(id, status: .interrupted, error: "resume failed: \(error)", durationSeconds: elapsed)
      throw error
    }
  }

  /// Tells the store this process still works on the run, with the wall time so far.
  package func heartbeat() throws { try store.heartbeat(id, owner: owner, durationSeconds: elapsed) }

  package var elapsed: Double { Date().timeIntervalSince(started) }

  /// Where a trainer's events go: figures and tags into the store, text to the progress line.
  package func record(_ event: TrainingEvent, progress: ProgressDisplay) throws {
    switch event {
    case .logged(let step, let loss, let throughput, let rate):
      try store.logMetrics(
        run: id,
        [
          MetricPoint(key: MetricKey.trainingLoss, step: step, value: loss), MetricPoint(key: throughput.key, step: step, value: throughput.perSecond),
          MetricPoint(key: MetricKey.learningRate, step: step, value: rate),
        ])
    case .targetReached(let reached):
      try store.logMetrics(run: id, reached.points)
    case .validated(let step, let accuracy):
      try store.logMetric(run: id, MetricPoint(key: MetricKey.validationAccuracy, step: step, value: accuracy))
    case .checkpointSaved(let step):
      try store.flushMetrics()
      try heartbeat()
      if step == TestHooks.holdAtStep { try holdUntilSignalled(step: step, progress: progress) }
    case .tag(let key, let value): try store.setTag(run: id, key: key, value: value)
    case .alive: try heartbeat()
    case .status(let text, let urgent): progress.update(text, force: urgent)
    case .note(let text): progress.line(text)
    }
  }

  /// The test hook `ONESHOT_TEST_HOLD_AT_STEP`: the run waits at a checkpoint, alive and
  /// heartbeating, until SIGINT or SIGTERM (or SIGKILL) arrives, so that tests of ownership,
  /// interruption and resumption need no wall-clock training; SIGUSR1 lets it go on training
  /// (a test changes the world meanwhile, e.g. stops the database server).
  private func holdUntilSignalled(step: Int, progress: ProgressDisplay) throws {
    TestHooks.release = 0
    signal(SIGUSR1) { _ in TestHooks.release = 1 }
    progress.line("held at step \(step) (ONESHOT_TEST_HOLD_AT_STEP)")
    var lastBeat = Date()
    while !InterruptFlag.requested && TestHooks.release == 0 {
      usleep(10_000)
      if Date().timeIntervalSince(lastBeat) >= 5 {
        try heartbeat()
        lastBeat = Date()
      }
    }
  }

  /// Runs `body` and ends the row as its outcome says; an error marks the run failed and is
  /// rethrown, except a lost lease (another process owns the run now: nothing more is written).
  package func recording(_ body: () throws -> RunOutcome) throws -> RunOutcome {
    let outcome: RunOutcome
    do {
      outcome = try body()
    } catch let error as StoreError {
      if case .leaseLost = error { throw error }
      // The server is away (or a signal ended the wait for it): the row cannot be written and
      // must not become `failed` when the server returns; the run stays resumable.
      if error.isUnavailable { throw error }
      try? finish(.failed, error: "\(error)")
      throw error
    } catch {
      try? finish(.failed, error: "\(error)")
      throw error
    }
    try finish(outcome.status, error: outcome.error)
    return outcome
  }

  /// Ends the row; if that write fails (a full disk), once more after releasing the store's
  /// reserve, so that the row says what happened rather than staying `running`.
  private func finish(_ status: RunStatus, error message: String?) throws {
    do {
      try store.finishRun(id, status: status, error: message, durationSeconds: elapsed)
    } catch {
      guard store.reservePath != nil else { throw error }
      store.releaseReserve()
      try store.finishRun(id, status: status, error: message, durationSeconds: elapsed)
    }
  }
}

/// Hooks that tests set through the environment; unset, they change nothing.
/// How long a run's owner stays its owner without a heartbeat: `ONESHOT_LEASE_SECONDS`, by
/// default 600. A run whose last heartbeat is older may be resumed by any process on any host
/// (a killed task on another node); a live owner heartbeats every 10 s while it trains and
/// evaluates. On the owner's own host a dead pid frees the run at once.
package enum Lease {
  package static let defaultSeconds: Double = 600
  package static var seconds: Double {
    ProcessInfo.processInfo.environment["ONESHOT_LEASE_SECONDS"].flatMap(Double.init).flatMap { $0.isFinite && $0 >= 0 ? $0 : nil } ?? defaultSeconds
  }
}

/// Renews a sweep task's claim of a configuration on a thread of its own, every quarter of the
/// lease, from the claim until the run's row exists: loading data from slow shared storage and
/// timing the precision can outlast the lease, and another task would take the configuration
/// over and run it too, or this task would lose its work at the claim's re-check (issue #46,
/// cause 2). Each renewal opens a connection for a moment and closes it: the task's own
/// connection is not shared between threads.
package final class ClaimHeartbeat: @unchecked Sendable {
  private let stopped = DispatchSemaphore(value: 0)
  private let lock = NSLock()
  private var isStopped = false

  /// Starts renewing: `renew` every `interval` seconds until `stop()`.
  package init(interval: Double, renew: @escaping @Sendable () -> Void) {
    Thread.detachNewThread { [stopped] in
      while stopped.wait(timeout: .now() + interval) == .timedOut { renew() }
    }
  }

  /// Renews a sweep task's claim of `config` in the store at `storePath` as `owner`.
  package convenience init(storePath: String, experiment: String, configHash: String, owner: String) {
    self.init(interval: max(Lease.seconds / 4, 0.05)) {
      _ = try? ResultsStore(path: storePath).renewClaim(experiment: experiment, configHash: configHash, owner: owner)
    }
  }

  /// Stops renewing (once; later calls do nothing).
  package func stop() {
    let first = lock.withLock { () -> Bool in
      defer { isStopped = true }
      return !isStopped
    }
    if first { stopped.signal() }
  }

  deinit { stop() }
}

package enum TestHooks {
  /// `ONESHOT_TEST_STALL_BEFORE_RUN=SECONDS`: a run waits that long after loading its data, before
  /// its row is written (slow shared storage, as a test sees it).
  package static let stallBeforeRun: Double? = ProcessInfo.processInfo.environment["ONESHOT_TEST_STALL_BEFORE_RUN"].flatMap { Double($0) }
  /// `ONESHOT_TEST_HOLD_AT_STEP=N`: a training run holds at its checkpoint of step N.
  package static let holdAtStep: Int? = ProcessInfo.processInfo.environment["ONESHOT_TEST_HOLD_AT_STEP"].flatMap { Int($0) }
  /// Set by SIGUSR1 while a run holds: it goes on training.
  nonisolated(unsafe) static var release: Int32 = 0
}

/// The settings a run records: every key of its configuration, less those its method ignores
/// (a prototypical run has no pairs a step).
func recordedSettings(_ config: ExperimentConfig) -> [(String, String)] {
  let unused = Set((config.training?.method.unusedTrainingKeys ?? []).map { "training.\($0)" })
  return flattenJSON(config.canonicalJSON).filter { !unused.contains($0.0) }
}
