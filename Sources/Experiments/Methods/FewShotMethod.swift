import Foundation
import Episodes
import Model
import ResultsStore
import Support

// A few-shot method is one file in this folder: a type conforming to `FewShotMethod`, listed
// once in `FewShotMethods.all`. Nothing outside the folder branches on which method a run uses:
// the trainer, the evaluator, the precision probe, predict and the records ask the method.
//
// The two halves, as easyfsl's `process_support_set` / `forward` and learn2learn's step functions:
// - training: what a step draws (through `TrainingDraws`: pairs, or episodes of the training
//   classes, augmented as a pure function of seed, step and slot), its loss and gradients, and
//   what its throughput counts;
// - scoring an episode: `classScores` gets the support set (each class's embeddings) and the
//   queries' embeddings and returns one score per class for each query. The evaluator embeds
//   every image of a protocol once, so a method that does not adapt (pairs through a head,
//   prototypes) costs what it always did; a method that adapts to each episode (fits a
//   classifier on the support embeddings, or fine-tunes) does that work inside `classScores`.

/// A few-shot method: how it trains and how it scores an episode.
package protocol FewShotMethod {
  /// The `training.objective` value that selects it, recorded in checkpoints (`objective`) and
  /// shown by `report`.
  static var name: String { get }
  /// How its network compares embeddings: through a learned head (pairs) or by a distance.
  static var similarity: Similarity { get }
  /// What its training throughput counts (the metric and the progress line's unit).
  static var throughputUnit: ThroughputUnit { get }
  /// Whether a step trains on an episode of the training classes (`training.episode`; the
  /// budget then comes in steps, never in pairs).
  static var trainsOnEpisodes: Bool { get }

  /// Whether its network carries a classifier over the training classes (`model.classes`, one
  /// output per class of the training pool), which its training uses and episodes do not.
  static var classifiesTrainingClasses: Bool { get }

  /// Keys of the training section that mean nothing for this method (their defaults stay in
  /// the configuration, and so in its hash, but runs do not record them as settings).
  static var unusedTrainingKeys: [String] { get }
  /// Problems of the training section for this method (key paths relative to `training`).
  static func problems(_ training: TrainingConfig) -> [ConfigProblem]
  /// Images one training step embeds.
  static func imagesPerStep(_ training: TrainingConfig) -> Int
  /// Comparisons one training step learns from (pairs; for episodes, the queries), as time to
  /// accuracy records them.
  static func pairsPerStep(_ training: TrainingConfig) -> Int

  /// Zeroes `network`'s gradients, then accumulates those of training step `step`'s loss (whose
  /// images come from `draws`); returns the loss.
  static func lossAndGradients(step: Int, network: inout EmbeddingNetwork, draws: TrainingDraws) -> Double
  /// One loss-and-gradients pass on `images` (N of them, N even, no real data), which the
  /// precision probe times.
  static func probeStep(network: inout EmbeddingNetwork, images: Tensor)

  /// Each query's score for each class of the episode (higher: more likely that class), given
  /// the classes' support embeddings and the queries' embeddings, as `NetworkScorer.embed` made
  /// them (an ensemble's members back to back in each row).
  static func classScores(model: NetworkEnsemble, queries: [[Float]], support: [[[Float]]]) throws -> [[Double]]
  /// The same, for a method whose scoring depends on how each member was trained (`settings`,
  /// one per member: MAML's adaptation). The default ignores them.
  static func classScores(model: NetworkEnsemble, settings: [ScoringSettings], queries: [[Float]], support: [[[Float]]]) throws -> [[Double]]
  /// What `predict` prints for a pair, from the ensemble's pair score (`NetworkEnsemble.score`).
  static func pairValue(score: Double) -> Double
  /// The heading of that value, and whether a larger value means more alike.
  static var pairValueName: (heading: String, higherIsCloser: Bool) { get }

  /// Whether `classScores` needs the episode's images: `NetworkScorer` then puts each image's
  /// network input (S x S values) after the members' embeddings in its row, for a method that
  /// adapts the network itself to each episode (MAML).
  static var scoresImages: Bool { get }

  /// The loss of training step `step` with the weights its gradient is taken at moved by `t`
  /// along `direction` (one array per parameter of the store, empty for none): the function whose
  /// derivative along `direction` at t = 0 is the gradient's component along it, which the
  /// conformance suite checks by central differences. For most methods those weights are the
  /// network's own; a first-order meta-learning method takes its gradient at the weights adapted
  /// to the episode, the adaptation held fixed.
  static func loss(step: Int, network: EmbeddingNetwork, draws: TrainingDraws, movedBy t: Double, along direction: [[Double]]) -> Double
}

extension FewShotMethod {
  package static var classifiesTrainingClasses: Bool { false }
  package static var scoresImages: Bool { false }

  package static func classScores(model: NetworkEnsemble, settings: [ScoringSettings], queries: [[Float]], support: [[[Float]]]) throws -> [[Double]] {
    try classScores(model: model, queries: queries, support: support)
  }

  package static func loss(step: Int, network: EmbeddingNetwork, draws: TrainingDraws, movedBy t: Double, along direction: [[Double]]) -> Double {
    var moved = network
    moved.store.move(by: t, along: direction)
    return lossAndGradients(step: step, network: &moved, draws: draws)
  }

  /// The items a step counts in its throughput: its pairs, or the images it embeds.
  package static func throughputPerStep(_ training: TrainingConfig) -> Int {
    throughputUnit == .pairs ? pairsPerStep(training) : imagesPerStep(training)
  }
}

/// What scoring an episode reads from the training section a network was trained with, one per
/// member of an ensemble: MAML's adaptation (`training.adaptation`). A method that does not adapt
/// to episodes reads nothing of it.
package struct ScoringSettings: Equatable, Sendable {
  package var adaptation = AdaptationSettings()

  package init() {}
  /// A training section's (its defaults where it sets nothing).
  package init(training: TrainingConfig?) { adaptation = training?.adaptationOrDefaults ?? AdaptationSettings() }

  /// Each member's settings, from the `experiment_config` its training run wrote into the
  /// checkpoint (`member.<m>.experiment_config` in an ensemble); the defaults for a member whose
  /// configuration sets none (a run from before the key, a checkpoint `export` wrote). Read only
  /// for a method that adapts to episodes (`scoresImages`), so that another method's checkpoint
  /// scores whatever its metadata holds. Throws when a member's configuration is unreadable or
  /// its settings impossible: scoring it with other settings than it was trained with would be
  /// a silent mistake.
  package static func of(checkpoint metadata: [String: String], members: Int, method: any FewShotMethod.Type, path: String) throws -> [ScoringSettings] {
    guard method.scoresImages else { return Array(repeating: ScoringSettings(), count: members) }
    return try (0..<members).map { m in
      let key = members > 1 ? Checkpoint.memberKey(m, "experiment_config") : "experiment_config"
      guard let text = metadata[key] else { return ScoringSettings() }
      func refuse(_ reason: String) -> CheckpointError { .impossibleValue(path: path, name: key, reason: reason, metadata: true) }
      guard let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else { throw refuse("is not a JSON object") }
      guard let adaptation = (object["training"] as? [String: Any])?["adaptation"] else { return ScoringSettings() }
      var settings = ScoringSettings()
      do {
        settings.adaptation = try JSONDecoder().decode(AdaptationSettings.self, from: JSONSerialization.data(withJSONObject: adaptation))
      } catch {
        throw refuse("has an unreadable training.adaptation (\(describeDecodingError(error)))")
      }
      if let problem = settings.adaptation.problems().first { throw refuse("has training.adaptation.\(problem.keyPath): \(problem.message)") }
      return settings
    }
  }
}

/// What a method's training throughput counts.
package enum ThroughputUnit: String, Sendable {
  case pairs, images

  /// The metric recorded at every log point.
  package var metricKey: String { self == .pairs ? MetricKey.pairsPerSecond : MetricKey.imagesPerSecond }
}

/// The registry: every method, each listed once.
package enum FewShotMethods {
  /// The methods, the default (the reference project's pairs) first.
  package static let all: [any FewShotMethod.Type] = [
    SiamesePairs.self,
    PrototypicalNetworks.self,
    MatchingNetworks.self,
    FineTuning.self,
    RelationNetworks.self,
    ScaledMatchingNetworks.self,
    MAML.self,
  ]

  /// Their names, as `training.objective` takes them.
  package static var names: [String] { all.map { $0.name } }

  /// The method called `name`, if any.
  package static func named(_ name: String) -> (any FewShotMethod.Type)? { all.first { $0.name == name } }

  /// The method of a network whose checkpoint or training section names `objective`; without
  /// one (an older checkpoint, an eval-only file), the first method whose network compares
  /// embeddings as `similarity` says (pairs for a head, prototypes for a distance).
  package static func method(objective: String?, similarity: Similarity) -> any FewShotMethod.Type {
    if let objective, let method = named(objective), method.similarity == similarity { return method }
    return all.first { $0.similarity == similarity } ?? SiamesePairs.self
  }
}

extension FewShotMethods {
  /// The method of a checkpoint: the objective it was trained with (an ensemble's first
  /// member's), else the default of its network's similarity.
  package static func method(ofCheckpoint metadata: [String: String], model: NetworkEnsemble) -> any FewShotMethod.Type {
    method(objective: metadata["objective"] ?? metadata[Checkpoint.memberKey(0, "objective")], similarity: model.config.similarity)
  }
}

/// A method whose step draws one episode of the training classes (`training.episode`, the
/// budget in steps): the settings, checks and counts such methods share.
package protocol TrainsOnEpisodes: FewShotMethod {}

/// A method that trains on one episode of the training classes a step with a loss on the
/// episode's embeddings alone: what such methods share. A new one supplies that loss, its
/// episode scoring and its pair value.
package protocol EpisodicMethod: TrainsOnEpisodes {
  /// The loss on one episode's embeddings and dL/d(embeddings) (same shape). The rows come
  /// class-major: class c's `shots` support rows, then its `queries` query rows, then class c+1.
  ///   embeddings: (ways (shots + queries), F)
  static func episodeLoss(embeddings: Tensor, ways: Int, shots: Int, queries: Int) -> (loss: Double, dEmbeddings: Tensor)
}

extension TrainsOnEpisodes {
  package static var trainsOnEpisodes: Bool { true }
  package static var throughputUnit: ThroughputUnit { .images }
  package static var unusedTrainingKeys: [String] { ["pairsPerStep", "pairing"] }

  package static func problems(_ training: TrainingConfig) -> [ConfigProblem] { episodeProblems(training) }

  /// The training episode's problems (a method with settings of its own adds theirs).
  package static func episodeProblems(_ training: TrainingConfig) -> [ConfigProblem] {
    guard let episode = training.episode else {
      return [("episode", "the \(name) objective needs its training episode, e.g. {\"ways\": 60, \"shots\": 1, \"queries\": 5, \"alphabetMode\": \"across\"}")]
    }
    var out = nested("episode", episode.problems())
    if training.pairing != .independent { out.append(("pairing", "pairing is how the pairs objective draws its pairs; remove it for the \(name) objective")) }
    return out
  }

  /// (Saturating: an episode of absurd size, refused by its checks, must not crash first.)
  package static func imagesPerStep(_ training: TrainingConfig) -> Int {
    guard let episode = training.episode else { return 0 }
    let (perClass, o1) = episode.shots.addingReportingOverflow(episode.queries)
    let (images, o2) = episode.ways.multipliedReportingOverflow(by: perClass)
    return o1 || o2 ? Int.max : images
  }

  package static func pairsPerStep(_ training: TrainingConfig) -> Int {
    guard let episode = training.episode else { return 0 }
    let (pairs, overflow) = episode.ways.multipliedReportingOverflow(by: episode.queries)
    return overflow ? Int.max : pairs
  }
}

extension EpisodicMethod {
  package static func lossAndGradients(step: Int, network: inout EmbeddingNetwork, draws: TrainingDraws) -> Double {
    let episode = draws.episode(step)
    return network.embeddingLossAndGradients(images: episode.images) { episodeLoss(embeddings: $0, ways: episode.ways, shots: episode.shots, queries: episode.queries) }
  }

  /// An episode of N/2 classes, one support and one query image each.
  package static func probeStep(network: inout EmbeddingNetwork, images: Tensor) {
    _ = network.embeddingLossAndGradients(images: images) { episodeLoss(embeddings: $0, ways: images.batch / 2, shots: 1, queries: 1) }
  }
}

extension ParameterStore {
  /// Moves every parameter by `t` along `direction` (one array per parameter; an empty one
  /// leaves its parameter where it is).
  package mutating func move(by t: Double, along direction: [[Double]]) {
    precondition(direction.count == parameters.count, "\(direction.count) directions for \(parameters.count) parameters")
    for p in parameters.indices where !direction[p].isEmpty {
      precondition(direction[p].count == parameters[p].value.count, "direction \(p): \(direction[p].count) values for \(parameters[p].value.count)")
      for i in parameters[p].value.indices { parameters[p].value[i] += Float(t * direction[p][i]) }
    }
  }
}

/// What a training step can draw: the training split's pairs and episodes, and its images as a
/// network input. Every draw is a pure function of (seed, step, slot), so a resumed run draws
/// what an uninterrupted one would have.
package struct TrainingDraws {
  /// The training section (pairing, pairs a step, the training episode).
  package let training: TrainingConfig
  /// Same/different pairs of the training classes.
  package let pairs: PairSampler
  /// Episodes of the training classes, when `training.episode` is set.
  package let episodes: EpisodeSampler?
  /// Images of the training split as one input tensor (N, 1, S, S), augmented (when the
  /// training section says so) as a pure function of (seed, step, slot).
  package let input: (_ images: [Int], _ step: Int) -> Tensor

  /// Each training class's position in the training pool (0 ..< its class count): the label
  /// a classifier over the training classes learns.
  private let poolPositions: [Int: Int]

  package init(training: TrainingConfig, pairs: PairSampler, episodes: EpisodeSampler?, input: @escaping (_ images: [Int], _ step: Int) -> Tensor) {
    self.training = training
    self.pairs = pairs
    self.episodes = episodes
    self.input = input
    let pool = episodes?.pool.classes ?? pairs.pool.classes
    poolPositions = Dictionary(uniqueKeysWithValues: pool.enumerated().map { ($0.element, $0.offset) })
  }

  /// How many classes the training pool has (the outputs of a classifier over them).
  package var trainingClassCount: Int { poolPositions.count }

  /// The images of training episode `step`, class after class (each class's support images,
  /// then its queries), as one input tensor, the episode's shape, and each image's class as its
  /// position in the training pool (0 ..< `trainingClassCount`).
  package func episode(_ step: Int) -> (images: Tensor, ways: Int, shots: Int, queries: Int, labels: [Int]) {
    guard let episodes else { preconditionFailure("this method trains on episodes: the training section must set training.episode (checked when the file is read)") }
    let episode = episodes.episode(step)
    var images: [Int] = [], labels: [Int] = []
    for (c, character) in episode.classes.enumerated() {
      let drawn = episode.support[c] + episode.queries[c]
      images += drawn
      labels += Array(repeating: poolPositions[character] ?? -1, count: drawn.count)
    }
    let spec = episodes.spec
    return (input(images, step), spec.ways, spec.shots, spec.queries, labels)
  }
}
