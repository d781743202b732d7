import Episodes
import Foundation
import Model
import ResultsStore
import Support

/// The data one experiment needs, loaded and checked before anything is written, each part
/// built once: for training, the background split and its pools, the pair sampler and the
/// validation episodes; for evaluation, every protocol with its episodes. Only what the run
/// uses is read (an eval-only run on a folder of images reads no Omniglot archive). An
/// impossible episode spec or a bad image folder fails here.
package struct ExperimentData {
  /// What training reads.
  package struct Training {
    package let background: ImageSplit
    package let pools: (training: ClassPool, validation: ClassPool)
    package let pairs: PairSampler
    package let validationEpisodes: [ScoringEpisode]
    /// The prototypical objective's training episodes (nil for the pairs objective).
    package let episodes: EpisodeSampler?
  }
  package let training: Training?
  package let protocols: [PreparedProtocol]
  /// Fingerprints of the data read: Omniglot's archives and each image folder.
  package let fingerprints: [(source: String, fingerprint: String)]
  /// The fingerprint of the folder training read (`data.folder`), and what it held out.
  package let trainingFolder: (fingerprint: String, heldOut: [String])?

  package static func load(_ config: ExperimentConfig, dataPath: String?, training settings: TrainingConfig?) throws -> ExperimentData {
    let sources = DataSources(config, dataPath: dataPath)
    let training = try settings.map { try sources.training($0) }
    let protocols = try config.evaluation.map { try sources.prepare($0) }
    return ExperimentData(training: training, protocols: protocols, fingerprints: sources.fingerprints(), trainingFolder: sources.trainingFolder)
  }

  /// Fails, as loading would, when a file or folder the experiment reads is missing: a cheap
  /// check of presence only, for callers that must not write anything before the data is known
  /// to be there (a sweep claims a configuration only then).
  package static func requireFiles(_ config: ExperimentConfig, dataPath: String?, trains: Bool) throws {
    let reader = DataReader(config, dataPath: dataPath)
    try dataSource(for: config, reader: reader).requireFiles(training: trains)
    let dataset = reader.dataset
    var needed: [URL] = []
    for item in config.evaluation {
      if item.protocolKind == .lake20 { needed.append(dataset.runsURL) } else if item.split == "evaluation" { needed.append(dataset.archiveURL(.evaluation)) }
    }
    for url in needed { try dataset.requireFile(url) }
  }

  /// The run's dataset fingerprint: the training folder's when it trained on one, else
  /// Omniglot's when it read Omniglot, else its image folder's (several: a digest of theirs).
  package var datasetFingerprint: String? {
    if let trainingFolder { return trainingFolder.fingerprint }
    if let omniglot = fingerprints.first(where: { $0.source == "omniglot" }) { return omniglot.fingerprint }
    if fingerprints.count == 1 { return fingerprints[0].fingerprint }
    return fingerprints.isEmpty ? nil : SHA256.hex(Array(fingerprints.map { "\($0.source)\t\($0.fingerprint)\n" }.joined().utf8))
  }
}

/// The data an experiment reads, each part read at most once and only when something uses it,
/// through its data source (`DataSources/`: Omniglot's split, the Vinyals split or a folder):
/// the training split and its pools, Lake's runs, the protocols' classes, image folders.
private final class DataSources {
  let config: ExperimentConfig
  let reader: DataReader
  let source: any DataSource

  init(_ config: ExperimentConfig, dataPath: String?) {
    self.config = config
    reader = DataReader(config, dataPath: dataPath)
    source = dataSource(for: config, reader: reader)
  }

  var trainingFolder: (fingerprint: String, heldOut: [String])? { reader.trainingFolder }

  /// The training split, its pools, the pair sampler and the validation episodes.
  func training(_ settings: TrainingConfig) throws -> ExperimentData.Training {
    let background = try source.trainingSplit(), pools = try source.pools()
    if settings.method.classifiesTrainingClasses, let classes = config.model.classes, classes != pools.training.classes.count {
      throw UserFacingError(
        "model.classes is \(classes), but the training classes (\(pools.training.name)) number \(pools.training.classes.count): set \"classes\": \(pools.training.classes.count) in the experiment file")
    }
    let sampler = try PairSampler(pool: pools.training, sameAlphabetNegatives: config.data.sameAlphabetNegatives, seed: config.seed)
    if settings.pairing == .batch, let problem = sampler.problemForBatchPairing { throw UserFacingError(problem) }
    let episodes = try source.validationSampler(settings.validation).episodes(count: settings.validation.episodes)
    return ExperimentData.Training(
      background: background, pools: pools, pairs: sampler, validationEpisodes: episodes.map { $0.scoring(in: background) }, episodes: try trainingEpisodes(settings, pool: pools.training))
  }

  /// The sampler of the prototypical objective's training episodes, checked against the
  /// training classes (an impossible episode names its key); nil for the pairs objective.
  func trainingEpisodes(_ settings: TrainingConfig, pool: ClassPool) throws -> EpisodeSampler? {
    guard settings.method.trainsOnEpisodes, let spec = settings.episode else { return nil }
    do {
      return try EpisodeSampler(pool: pool, spec: spec, seed: config.seed)
    } catch let error as DatasetError {
      throw UserFacingError("training.episode: \(error) (the training classes are \(pool.name), \(pool.classes.count) classes)")
    }
  }

  /// One protocol with its episodes; an impossible episode spec fails here, naming the protocol.
  func prepare(_ item: ProtocolConfig) throws -> PreparedProtocol {
    if item.protocolKind == .lake20 {
      let runs = try reader.lakeRuns()
      return PreparedProtocol(
        name: item.name, split: "lake20", ways: 20, shots: 1, queries: 1, sequence: "lake20", evaluator: Evaluator(runs: runs), episodes: runs.scoringEpisodes,
        augmentedCopies: item.augmentedCopies ?? 0)
    }
    var spec = item.spec
    let pool: ClassPool
    var source = ""
    switch item.split {
    case "folder":
      let (images, fingerprint) = try reader.folder(item.path ?? "")
      source = "|folder=\(fingerprint)"
      pool = ClassPool(split: images)
      spec = pool.fitted(spec)
    case "validation":
      pool = try self.source.pools().validation
      source = try self.source.validationIdentity()
    default:
      (pool, source) = try self.source.testClasses()
    }
    let sampler: EpisodeSampler
    do {
      sampler = try EpisodeSampler(pool: pool, spec: spec, seed: item.seed)
    } catch let error as DatasetError {
      throw UserFacingError("protocol \(item.name): \(error)")
    }
    var effective = item
    effective.spec = spec
    return PreparedProtocol(
      name: effective.name, split: pool.name, ways: spec.ways, shots: spec.shots, queries: spec.queries,
      sequence: "\(item.split)|\(spec.canonical)|seed=\(item.seed)\(source)", evaluator: Evaluator(split: pool.split),
      episodes: sampler.episodes(count: item.episodes).map { $0.scoring(in: pool.split) }, augmentedCopies: item.augmentedCopies ?? 0)
  }

  /// Omniglot's fingerprint when anything read it, then each image folder's.
  func fingerprints() -> [(source: String, fingerprint: String)] { reader.fingerprints() }
}

/// SIGINT or SIGTERM arrived while a protocol was being scored.
struct EvaluationInterrupted: Error {}

/// One evaluation protocol with its episodes, ready to score.
package struct PreparedProtocol {
  package let name: String
  /// The split recorded with the result: `lake20`, `evaluation` or `validation`.
  package let split: String
  package let ways: Int
  package let shots: Int
  package let queries: Int
  /// What episode i is a pure function of (see `TagKey.sequence`).
  package let sequence: String
  package let evaluator: Evaluator
  package let episodes: [ScoringEpisode]
  /// Distorted copies of each image the harness's network averages its embedding over (0: none).
  package var augmentedCopies = 0

  /// The identity of the episodes: SHA-256 over the split and every episode's support and
  /// query images. Two runs with the same digest (and dataset) scored the same trials.
  package var episodeDigest: String {
    var text = "\(split)\n"
    for e in episodes {
      text += "\(e.index)|\(e.group ?? "")|\(e.support.map { $0.map(String.init).joined(separator: ",") }.joined(separator: ";"))|"
      text += e.queries.map { "\($0.image):\($0.label)" }.joined(separator: ",") + "\n"
    }
    return SHA256.hex(Array(text.utf8))
  }

  /// Scores `scorer` (a checkpoint's network, an outside scorer) on every episode: the result
  /// row and one row per episode. `alive` is called as the work goes on (the run's heartbeat, at
  /// most every 10 s).
  package func evaluate<Scorer: OneShotScorer>(_ scorer: Scorer, progress: ProgressDisplay, alive: @escaping () -> Void = {}) throws -> (result: ProtocolResult, episodes: [EpisodeRow]) {
    var lastAlive = Date()
    progress.update("evaluating \(name): \(episodes.count) episodes...", force: true)
    var phase = EvaluationPhase.embedding
    var rate = PhaseRate()
    let summary = try evaluator.evaluate(scorer, episodes: episodes) { now, done, total in
      if InterruptFlag.requested { throw EvaluationInterrupted() }
      if now != phase { (phase, rate) = (now, PhaseRate()) }
      let work = rate.text(done: done, total: total, unit: now == .embedding ? "images embedded" : "episodes scored")
      progress.update("evaluating \(name): \(work)", force: done == total)
      if Date().timeIntervalSince(lastAlive) >= 10 {
        alive()
        lastAlive = Date()
      }
    }
    let interval = summary.interval95
    let result = ProtocolResult(
      protocolName: name, split: split, ways: ways, shots: shots, queries: queries, episodes: summary.episodes.count, accuracy: summary.accuracy,
      ciLow: interval.low, ciHigh: interval.high, seconds: summary.seconds)
    return (result, summary.episodes.map { EpisodeRow(episode: $0.index, alphabet: $0.group, correct: $0.correct, total: $0.total) })
  }
}
