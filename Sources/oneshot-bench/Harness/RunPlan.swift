import Episodes
import Foundation
import Model
import ResultsStore

/// Options of `run` that are not in the experiment file.
struct RunOptions {
  var storePath: String
  var threads: Int?
  /// Replaces the experiment file's seed (it becomes part of the recorded configuration).
  var seed: UInt64? = nil
  /// `--set key.path=value` assignments, applied to the file before it is decoded and checked.
  var overrides: [ConfigOverride] = []
  var evalOnlyCheckpoint: String?
  var resumeRunID: String?
  var dataPath: String?
  var runsFolder: String = "runs"
}

/// What `run` will do, decided and checked before any data is read or anything is written:
/// the mode and the resolved configuration (the file's, or the resumed run's stored one, with
/// the command line's overrides), checked the same way on every path.
struct RunPlan {
  enum Mode {
    /// Train from scratch, then evaluate the best checkpoint.
    case fresh
    /// Continue an interrupted run from its last checkpoint.
    case resume(runID: String)
    /// Evaluate a checkpoint (a network or an ensemble) without training.
    case evalOnly(checkpoint: String)
  }

  let mode: Mode
  let config: ExperimentConfig
  let options: RunOptions
  /// The store, already open when resuming (the configuration comes from it).
  private let openedStore: ResultsStore?

  init(configPath: String?, options: RunOptions) throws {
    self.options = options
    var config: ExperimentConfig
    let source: String
    if let resume = options.resumeRunID {
      let store = try ResultsStore(path: options.storePath)
      let id = try store.resolveRunID(resume)
      let detail = try store.run(id)
      guard detail.summary.status != .completed else { throw UserFacingError("run \(id) already completed; nothing to resume") }
      source = "run \(id)'s stored configuration"
      config = try ExperimentConfig.decode(Data(detail.configJSON.utf8), source: source)
      mode = .resume(runID: id)
      openedStore = store
    } else {
      guard let configPath else { throw UserFacingError("give an experiment file (e.g. experiments/vgg105.json) or --resume RUN_ID") }
      source = configPath
      config = try ExperimentConfig.load(configPath, overrides: options.overrides)
      mode = options.evalOnlyCheckpoint.map { .evalOnly(checkpoint: $0) } ?? .fresh
      openedStore = nil
    }
    if let threads = options.threads { config.threads = threads }
    if let seed = options.seed { config.seed = seed }
    try config.check(source: source)
    self.config = config
  }

  /// The results store (opened only once the data is known to load, so that a refused run
  /// creates no database).
  func store() throws -> ResultsStore {
    try openedStore ?? ResultsStore(path: options.storePath)
  }

  /// The run's folder of checkpoints.
  func folder(runID: String) -> URL {
    URL(fileURLWithPath: options.runsFolder).appendingPathComponent(runID)
  }
}

/// The data one experiment needs, loaded and checked before anything is written: the
/// background split and its pools, the training pair sampler, the validation episodes and
/// every evaluation protocol with its episodes, each built once. An impossible episode spec
/// fails here.
struct ExperimentData {
  let dataset: OmniglotDataset
  let background: ImageSplit
  let pools: (training: ClassPool, validation: ClassPool)
  let pairs: PairSampler
  let validationEpisodes: [ScoringEpisode]
  let protocols: [PreparedProtocol]

  static func load(_ config: ExperimentConfig, dataPath: String?) throws -> ExperimentData {
    let dataset = OmniglotDataset(root: URL(fileURLWithPath: dataPath ?? config.data.path))
    let size = config.model.inputSize
    let needsEvaluation = config.evaluation.contains { $0.protocolKind == .episodes && $0.split == "evaluation" }
    let splits = try dataset.load(needsEvaluation ? [.background, .evaluation] : [.background], size: size)
    let background = splits[0]
    let pools = try background.trainingAndValidation(validationAlphabets: config.data.validationAlphabets)
    let pairs = try PairSampler(pool: pools.training, sameAlphabetNegatives: config.data.sameAlphabetNegatives, seed: config.seed)
    let validation = config.training.validation
    let validationEpisodes = try EpisodeSampler(pool: pools.validation, spec: validation.spec, seed: validation.seed).episodes(count: validation.episodes)
      .map { $0.scoring(in: background) }
    let runs = try config.evaluation.contains { $0.protocolKind == .lake20 } ? LakeRuns.load(from: dataset, size: size) : nil
    let protocols = try config.evaluation.map { item -> PreparedProtocol in
      switch item.protocolKind {
      case .lake20:
        return PreparedProtocol(name: item.name, split: "lake20", ways: 20, shots: 1, queries: 1, evaluator: Evaluator(runs: runs!), episodes: runs!.scoringEpisodes)
      case .episodes:
        let pool = item.split == "evaluation" ? ClassPool(split: splits[1]) : pools.validation
        let sampler: EpisodeSampler
        do {
          sampler = try EpisodeSampler(pool: pool, spec: item.spec, seed: item.seed)
        } catch let error as DatasetError {
          throw UserFacingError("protocol \(item.name): \(error)")
        }
        return PreparedProtocol(
          name: item.name, split: pool.name, ways: item.spec.ways, shots: item.spec.shots, queries: item.spec.queries, evaluator: Evaluator(split: pool.split),
          episodes: sampler.episodes(count: item.episodes).map { $0.scoring(in: pool.split) })
      }
    }
    return ExperimentData(dataset: dataset, background: background, pools: pools, pairs: pairs, validationEpisodes: validationEpisodes, protocols: protocols)
  }
}

/// One evaluation protocol with its episodes, ready to score.
struct PreparedProtocol {
  let name: String
  /// The split recorded with the result: `lake20`, `evaluation` or `validation`.
  let split: String
  let ways: Int
  let shots: Int
  let queries: Int
  let evaluator: Evaluator
  let episodes: [ScoringEpisode]

  /// Scores `model` on every episode: the result row and one row per episode.
  func evaluate(_ model: SiameseEnsemble, progress: ProgressDisplay) throws -> (result: ProtocolResult, episodes: [EpisodeRow]) {
    progress.update("evaluating \(name): \(episodes.count) episodes...", force: true)
    let summary = try evaluator.evaluate(SiameseScorer(model: model), episodes: episodes) { done, total in
      progress.update("evaluating \(name): \(done)/\(total) episodes")
    }
    let result = ProtocolResult(
      protocolName: name, split: split, ways: ways, shots: shots, queries: queries, episodes: summary.episodes.count, accuracy: summary.accuracy,
      ciLow: summary.accuracy - summary.halfWidth95, ciHigh: summary.accuracy + summary.halfWidth95, seconds: summary.seconds)
    return (result, summary.episodes.map { EpisodeRow(episode: $0.index, alphabet: $0.group, correct: $0.correct, total: $0.total) })
  }
}

/// A run row being written. `recording` ends it completed, failed or interrupted, with its
/// wall time, whatever happens inside (an error marks it failed and is rethrown).
struct RunRecording {
  let store: ResultsStore
  let id: String
  /// When the run started; a resumed run's includes the time spent before the interruption.
  let started: Date

  /// How the work inside `recording` ended.
  enum Ending {
    case completed([ProtocolResult])
    case failed(String)
    case interrupted(signal: Int32, step: Int)
  }

  var elapsed: Double { Date().timeIntervalSince(started) }

  func recording(_ body: () throws -> Ending) throws -> Ending {
    let ending: Ending
    do {
      ending = try body()
    } catch {
      try? store.finishRun(id, status: .failed, error: "\(error)", durationSeconds: elapsed)
      throw error
    }
    switch ending {
    case .completed: try store.finishRun(id, status: .completed, durationSeconds: elapsed)
    case .failed(let message): try store.finishRun(id, status: .failed, error: message, durationSeconds: elapsed)
    case .interrupted(let signal, let step):
      try store.finishRun(id, status: .interrupted, error: "interrupted by signal \(signal) at step \(step)", durationSeconds: elapsed)
    }
    return ending
  }
}
