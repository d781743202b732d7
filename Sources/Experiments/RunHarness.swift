import Episodes
import Foundation
import Model
import Reports
import ResultsStore
import Support

/// Runs a checked plan end to end and says how it ended (the caller maps that to an exit code
/// with `RunOutcome.exitCode`). User errors throw before anything is written.
///   data -> checkpoint to evaluate or precision to train in -> run row -> train -> evaluate -> record
package func runExperiment(_ plan: RunPlan) throws -> RunOutcome {
  let progress = ProgressDisplay()
  let config = plan.config
  ComputeThreads.set(config.threads)
  // Signals are honoured in every phase: before the run row exists, one ends the command with
  // nothing written; once it exists, the run ends interrupted.
  InterruptFlag.install()
  // A resume claims its run before any work (a completed run is refused), so that a stale
  // resume cannot reopen a run that finished while it read its data.
  if case .resume(let id) = plan.mode { try plan.store().claimRun(id, owner: RunRecording.thisProcess, staleAfter: Lease.seconds, isAlive: RunRecording.isAlive) }
  do {
    return try runClaimed(plan, progress: progress)
  } catch let error as RunLeftResumable {
    throw error  // the store is away: giving the claim back would wait for it once more
  } catch {
    // Failed before the run's outcome was recorded: the claim is given back (interrupted).
    if case .resume(let id) = plan.mode { try? plan.store().release(id, owner: RunRecording.thisProcess) }
    throw error
  }
}

/// What `runExperiment` does once a resumed run is claimed.
private func runClaimed(_ plan: RunPlan, progress: ProgressDisplay) throws -> RunOutcome {
  let config = plan.config
  let data = try loadData(plan, progress: progress)
  if let seconds = TestHooks.stallBeforeRun { Thread.sleep(forTimeInterval: seconds) }
  if InterruptFlag.requested { throw InterruptedBeforeRecording(signal: InterruptFlag.signal) }
  var evaluated: EvaluatedCheckpoint? = nil
  if case .evalOnly(let checkpoint) = plan.mode {
    let read = try EvaluatedCheckpoint(checkpoint, config: config)
    if let notice = read.notice { progress.line(notice) }
    // Known only now (from the checkpoint), and refused before the run row exists.
    try read.refuseAugmentedCopies(data.protocols)
    evaluated = read
  }
  // An outside scorer starts (and says what it is) before the run row exists: one that does
  // not start or speaks another protocol records nothing.
  var external: ExternalScorer? = nil
  if case .external = plan.mode, let command = config.scorer {
    progress.transient("starting the outside scorer...")
    external = try ExternalScorer(command: command, expectedSize: config.model.inputSize)
  }
  defer { external?.finish() }
  if case .fresh = plan.mode { try plan.checkRunsFolder() }
  let compute = try trainingCompute(plan, progress: progress)
  let precisionTag: [(key: String, value: String)] = plan.trains ? [("precision.resolved", compute.chosen.rawValue), ("fusion.resolved", compute.fusionTag)] : []
  let externalTags: [(key: String, value: String)] =
    external.map { scorer in
      [
        (TagKey.mode, RunMode.external.rawValue), ("scorer.command", Secrets.redacted(scorer.command)), ("scorer.model", scorer.hello.model),
        ("scorer.output", scorer.hello.output.rawValue + (scorer.hello.distance.map { " \($0.rawValue)" } ?? "")), ("scorer.protocol", String(scorer.hello.version)),
      ] + (scorer.hello.output == .episodes ? [(TagKey.scorerTransductive, scorer.hello.transductive ? "yes" : "no")] : [])
    } ?? []
  let run = try RunRecording.begin(plan, data: data, tags: (evaluated?.tags ?? []) + precisionTag + externalTags)
  let resumable = try run.resumable(plan)
  progress.line("run \(run.id) (\(config.name)) recording into \(run.store.displayPath)")
  let outcome: RunOutcome
  do {
    outcome = try recordRun(plan, data: data, run: run, resumable: resumable, evaluated: evaluated, external: external, compute: compute, progress: progress)
  } catch let error as StoreError where error.isUnavailable {
    progress.finish()
    throw RunLeftResumable(reason: error, runID: run.id, resumeCommand: plan.resumeCommand(run.id))
  }
  progress.finish()
  switch outcome {
  case .completed(let results): print(resultsTable(runID: run.id, experiment: config.name, results: results, duration: run.elapsed))
  case .failed(let message): printError(message)
  case .interrupted(_, let step): printNote("interrupted at step \(step); checkpoint saved. Continue with: \(plan.resumeCommand(run.id))")
  case .interruptedEvaluating:
    printNote(
      plan.trains
        ? "interrupted while evaluating; the results so far are kept and the best checkpoint saved. Continue with: \(plan.resumeCommand(run.id))"
        : "interrupted while evaluating; the results so far are kept (run \(run.id), marked interrupted); run the command again to score every protocol")
  }
  return outcome
}

/// Trains (unless the run scores a given checkpoint or an outside scorer) and evaluates, inside
/// the run's recording (which ends the row with the outcome).
private func recordRun(
  _ plan: RunPlan, data: ExperimentData, run: RunRecording, resumable: Resumable?, evaluated: EvaluatedCheckpoint?, external: ExternalScorer?, compute: PrecisionProbe.Outcome,
  progress: ProgressDisplay
) throws -> RunOutcome {
  try run.recording {
    if let external {
      do {
        return .completed(try evaluate(external, on: data.protocols, run: run, progress: progress))
      } catch is EvaluationInterrupted {
        return .interruptedEvaluating(signal: InterruptFlag.signal)
      }
    }
    let checkpoint: EvaluatedCheckpoint
    if let evaluated {
      checkpoint = evaluated
    } else {
      switch try train(plan, data: data, compute: compute, resumable: resumable, run: run, progress: progress) {
      case .stopped(let outcome): return outcome
      case .finished(let best): checkpoint = best
      }
    }
    do {
      return .completed(try evaluate(checkpoint, on: data.protocols, run: run, progress: progress))
    } catch is EvaluationInterrupted {
      return .interruptedEvaluating(signal: InterruptFlag.signal)
    }
  }
}

/// Reads what the run uses (and says how long the training data took).
func loadData(_ plan: RunPlan, progress: ProgressDisplay) throws -> ExperimentData {
  let started = Date(), config = plan.config
  progress.transient("reading data...")
  let data = try ExperimentData.load(config, dataPath: plan.options.dataPath, training: plan.trains ? config.training : nil)
  if let training = data.training {
    progress.line(
      String(
        format: "data: %d background images (%d training / %d validation classes) at %dx%d in %.2f s", training.background.images.count, training.pools.training.classes.count,
        training.pools.validation.classes.count, config.model.inputSize, config.model.inputSize, Date().timeIntervalSince(started)))
  }
  return data
}

/// Trains (or goes on training) and returns the best checkpoint, or how the run stopped.
func train(_ plan: RunPlan, data: ExperimentData, compute: PrecisionProbe.Outcome, resumable: Resumable?, run: RunRecording, progress: ProgressDisplay) throws -> TrainingEndWithCheckpoint {
  guard let settings = plan.config.training, let training = data.training else {
    throw UserFacingError("\(plan.config.name) has no training section; evaluate a checkpoint with --eval-only")
  }
  let trainer = try Trainer(
    config: plan.config, training: settings, precision: compute.chosen, fusesNormalizationPooling: compute.fusesNormalizationPooling, data: training,
    folder: plan.folder(runID: run.id), runID: run.id)
  trainer.elapsed = { run.elapsed }
  if let resumable {
    trainer.resume(from: resumable)
    progress.line("resuming at step \(trainer.state.step) of \(settings.steps)")
  }
  let evaluationWork = imagesScored(data.protocols.flatMap(\.episodes)) / max(imagesScored(training.validationEpisodes), 1)
  // A step of a large network on a slow CPU takes tens of seconds (the first ones also choose
  // oneDNN's kernels): the heartbeat says so when the progress line has been quiet.
  let status = WorkStatus("step \(trainer.state.step + 1)/\(settings.steps) running (the first steps also choose oneDNN's kernels)")
  trainer.report = { event in
    if case .status(let text, _) = event { status.text = "\(text)  (next step running)" }
    try run.record(event, progress: progress)
  }
  switch try progress.whileWorking(status, { try trainer.train(evaluationWork: evaluationWork) }) {
  case .stopped(let outcome): return .stopped(outcome)
  case .finished(let stoppedEarlyAt):
    if let step = stoppedEarlyAt {
      // Two rules end a run early: a reached target (`stopAtTarget`) or patience (issue #45, cause Q).
      if settings.stopAtTarget, let highest = settings.targets?.max(), trainer.state.bestValidation >= highest {
        progress.line(String(format: "stopped early at step %d: validation reached the highest target, %@%% (stopAtTarget)", step, TargetReached.text(100 * highest)))
      } else {
        progress.line("stopped early at step \(step): no validation improvement in \(settings.patience) validations")
      }
    }
    progress.finish()
    progress.line(String(format: "best validation %.2f%% at step %d", 100 * trainer.state.bestValidation, trainer.state.bestStep))
    return .finished(try EvaluatedCheckpoint(trainer.bestURL.path, config: plan.config))
  }
}

/// How training ended, with the best checkpoint when there is one to evaluate.
enum TrainingEndWithCheckpoint {
  case finished(EvaluatedCheckpoint)
  case stopped(RunOutcome)
}

/// Scores the checkpoint on every protocol and records each result as it comes.
func evaluate(_ checkpoint: EvaluatedCheckpoint, on protocols: [PreparedProtocol], run: RunRecording, progress: ProgressDisplay) throws -> [ProtocolResult] {
  guard let digest = SHA256.hex(ofFile: URL(fileURLWithPath: checkpoint.path)) else {
    throw UserFacingError("cannot read checkpoint \(checkpoint.path) to hash it; check its permissions")
  }
  try run.store.setCheckpoint(run: run.id, path: checkpoint.path, hash: digest)
  try checkpoint.refuseAugmentedCopies(protocols)
  var results: [ProtocolResult] = []
  for item in protocols {
    let scorer = NetworkScorer(model: checkpoint.model, method: checkpoint.method, settings: checkpoint.settings, augmentedCopies: item.augmentedCopies)
    results += try evaluate(scorer, on: [item], run: run, progress: progress)
  }
  return results
}

/// Scores any scorer (a checkpoint's network, an outside scorer) on every protocol and records
/// each result as it comes.
func evaluate<Scorer: OneShotScorer>(_ scorer: Scorer, on protocols: [PreparedProtocol], run: RunRecording, progress: ProgressDisplay) throws -> [ProtocolResult] {
  var results: [ProtocolResult] = []
  for item in protocols {
    let (result, episodes) = try item.evaluate(scorer, progress: progress) { try? run.heartbeat() }
    try run.store.recordResult(run: run.id, result, episodes: episodes)
    try run.store.setTag(run: run.id, key: TagKey.episodes(item.name), value: item.episodeDigest)
    try run.store.setTag(run: run.id, key: TagKey.sequence(item.name), value: item.sequence)
    results.append(result)
    progress.line(
      String(
        format: "%@: %.2f%% [%.2f, %.2f] (95%% CI, %d episodes, %.1f s)", item.name, 100 * result.accuracy, 100 * result.ciLow, 100 * result.ciHigh, result.episodes,
        result.seconds))
  }
  return results
}

/// The training arithmetic and whether batch norm and pooling run fused: the precision as the
/// file sets it or, for `auto`, measured on this machine, and the fusion measured at that
/// precision (a resumed run keeps the answers it started with, so that it ends as it would have;
/// a run recorded before the fused layer existed ran unfused).
func trainingCompute(_ plan: RunPlan, progress: ProgressDisplay) throws -> PrecisionProbe.Outcome {
  guard plan.trains, let settings = plan.config.training else { return PrecisionProbe.Outcome(chosen: .fp32, millisecondsPerStep: [:]) }
  if case .resume(let id) = plan.mode, let recorded = PrecisionProbe.Outcome.recorded(tags: try plan.store().run(id).tags, fixed: settings.precision.fixed) {
    return recorded
  }
  let precisions = settings.precision.fixed.map { [$0] } ?? ConvolutionPrecision.allCases
  let status = WorkStatus("probe: starting")
  let probe = progress.whileWorking(status) {
    PrecisionProbe.resolve(
      model: plan.config.model, method: settings.method, images: settings.imagesPerStep, precisions: precisions, fusion: settings.fusion,
      convolutions: settings.convolutions, status: status
    ) {
      let what = precisions.count > 1 ? "in fp32 and in bf16" : "in \(precisions[0].rawValue)"
      let fusion = settings.fusion == .auto ? ", batch norm and pooling fused and not," : ""
      progress.line("probe: timing training steps \(what)\(fusion) on this network (once per machine and network)")
    }
  }
  let fusion = probe.fused.map { ", batch norm + pooling \($0 ? "fused" : "unfused")" } ?? ""
  let label = settings.precision == .auto ? "precision auto: \(probe.chosen.rawValue)\(fusion)" : "training in \(probe.chosen.rawValue) (the file's precision)\(fusion)"
  if probe.millisecondsPerStep.isEmpty {
    if settings.precision == .auto { progress.line("\(label) (\(probe.skipped ?? "nothing else to time"))") }
  } else {
    let times = probe.millisecondsPerStep.sorted { $0.key < $1.key }.map { String(format: "%@ %.1f ms", $0.key, $0.value) }.joined(separator: ", ")
    let skipped = probe.skipped.map { "; \($0)" } ?? ""
    progress.line("\(label) (\(times) a probe step\(probe.cached ? ", cached in \(PrecisionProbe.cacheURL.path)" : "")\(skipped))")
  }
  return probe
}

/// Images a set of episodes scores (support and queries), the unit of evaluation work.
func imagesScored(_ episodes: [ScoringEpisode]) -> Double {
  Double(episodes.reduce(0) { $0 + $1.queries.count + $1.support.joined().count })
}

/// A checkpoint to evaluate, read and checked against the experiment's model, with the tags
/// that label an eval-only run (mode, and an ensemble's members).
struct EvaluatedCheckpoint {
  let model: NetworkEnsemble
  /// How its episodes are scored (the method it was trained with).
  let method: any FewShotMethod.Type
  /// What the method reads of how each member was trained (MAML's adaptation): the checkpoint's,
  /// so that a checkpoint is scored as its training run scored it, unless the file sets
  /// `training.adaptation`, which then scores every member as a run of the file would.
  let settings: [ScoringSettings]
  let path: String
  let tags: [(key: String, value: String)]
  /// A line for the run's output when the file's adaptation replaces the checkpoint's.
  let notice: String?

  init(_ path: String, config: ExperimentConfig) throws {
    guard FileManager.default.fileExists(atPath: path) else { throw UserFacingError.checkpointNotFound(path) }
    let read = try Checkpoint.readModel(URL(fileURLWithPath: path), expecting: config.model)
    var tags: [(key: String, value: String)] = [(TagKey.mode, RunMode.evalOnly.rawValue)]
    if read.model.members.count > 1 {
      let memberRuns = read.model.members.indices.map { read.metadata[Checkpoint.memberKey($0, "run_id")] ?? "unknown" }
      tags += [(Checkpoint.membersKey, String(read.model.members.count)), ("ensemble_runs", memberRuns.joined(separator: ","))]
    }
    method = FewShotMethods.method(ofCheckpoint: read.metadata, model: read.model)
    var settings = try ScoringSettings.of(checkpoint: read.metadata, members: read.model.members.count, method: method, path: path)
    var notice: String? = nil
    if method.scoresImages, let chosen = config.training?.adaptation {
      // The file says how to adapt (a user scoring with other steps than training scored with):
      // it scores so, and says so, rather than keep the checkpoint's while the run's recorded
      // configuration names the file's.
      let own = Self.describe(settings.map(\.adaptation))
      if own != chosen.scoringDescription {
        notice = "scoring with the file's training.adaptation (\(chosen.scoringDescription)); the checkpoint's run scored with \(own) (remove training.adaptation from the file to score as it did)"
      }
      settings = Array(repeating: ScoringSettings(training: config.training), count: settings.count)
    } else if config.training?.adaptation != nil {
      notice = "the checkpoint's \(method.name) method does not adapt to episodes: the file's training.adaptation is not used"
    }
    tags.append((TagKey.scoringMethod, method.name))
    if method.scoresImages {
      // The record says how the episodes were adapted.
      tags.append((TagKey.scoringAdaptation, Self.describe(settings.map(\.adaptation))))
    }
    (model, self.settings, self.path, self.tags, self.notice) = (read.model, settings, path, tags, notice)
  }

  /// Each member's scoring adaptation, once when they agree.
  private static func describe(_ adaptations: [AdaptationSettings]) -> String {
    let each = adaptations.map(\.scoringDescription)
    return Set(each).count == 1 ? each[0] : each.joined(separator: "; ")
  }

  /// Test-time copies average embeddings; a method that adapts the network to each episode's
  /// images (MAML) has none to average.
  func refuseAugmentedCopies(_ protocols: [PreparedProtocol]) throws {
    if method.scoresImages, let item = protocols.first(where: { $0.augmentedCopies > 0 }) {
      throw UserFacingError("protocol \(item.name): the checkpoint's \(method.name) method adapts the network to each episode's images, not to averaged embeddings: remove augmentedCopies")
    }
  }
}

/// The table `run` prints at the end.
package func resultsTable(runID: String, experiment: String, results: [ProtocolResult], duration: Double) -> String {
  var lines = ["run \(runID)  \(experiment)  \(formatDuration(duration))"]
  lines.append("protocol".padding(toLength: 40, withPad: " ", startingAt: 0) + "accuracy   95% CI            episodes")
  for r in results {
    lines.append(
      r.protocolName.padding(toLength: 40, withPad: " ", startingAt: 0)
        + String(format: "%6.2f%%   [%6.2f, %6.2f]   %d", 100 * r.accuracy, 100 * r.ciLow, 100 * r.ciHigh, r.episodes))
  }
  return lines.joined(separator: "\n")
}
