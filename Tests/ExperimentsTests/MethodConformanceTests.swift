import Episodes
import Foundation
import Model
import TestSupport
import XCTest

@testable import Experiments

/// Every few-shot method passes one suite, called with one line each: the images a step draws
/// are a pure function of the step, its gradients match a finite difference of its loss, its
/// episode scores behave on constructed episodes, and a run stopped, saved and resumed ends with
/// the weights of one that never stopped. A new method in Sources/Experiments/Methods adds one
/// line here (and `testEveryRegisteredMethodHasItsLine` fails until it does).
final class MethodConformanceTests: TemporaryFolderTestCase {
  func testSiamesePairs() throws { try checkConformance(SiamesePairs.self) }
  func testPrototypicalNetworks() throws { try checkConformance(PrototypicalNetworks.self) }
  func testMatchingNetworks() throws { try checkConformance(MatchingNetworks.self) }
  func testFineTuning() throws { try checkConformance(FineTuning.self) }
  func testRelationNetworks() throws { try checkConformance(RelationNetworks.self) }
  func testScaledMatchingNetworks() throws { try checkConformance(ScaledMatchingNetworks.self) }
  func testMAML() throws { try checkConformance(MAML.self) }

  func testEveryRegisteredMethodHasItsLine() {
    XCTAssertEqual(FewShotMethods.names, ["pairs", "prototypical", "matching", "finetune", "relation", "matching-scaled", "maml"], "a method was added to FewShotMethods: give it its conformance line above")
    XCTAssertEqual(Set(FewShotMethods.names).count, FewShotMethods.all.count, "method names must be unique")
  }

  /// The whole suite for one method.
  func checkConformance(_ method: any FewShotMethod.Type, file: StaticString = #filePath, line: UInt = #line) throws {
    let setup = try MethodSetup(method)
    try checkDrawsAreAFunctionOfTheStep(setup, file: file, line: line)
    checkGradientAgainstFiniteDifference(setup, file: file, line: line)
    try checkEpisodeScores(setup, file: file, line: line)
    try checkResumeEquality(setup, file: file, line: line)
  }

  /// The same step gives the same loss and gradients on a copy of the network; another step
  /// draws other images (another loss).
  func checkDrawsAreAFunctionOfTheStep(_ setup: MethodSetup, file: StaticString, line: UInt) throws {
    var a = setup.network, b = setup.network, c = setup.network
    let lossA = setup.method.lossAndGradients(step: 5, network: &a, draws: setup.draws)
    let lossB = setup.method.lossAndGradients(step: 5, network: &b, draws: setup.draws)
    let lossC = setup.method.lossAndGradients(step: 6, network: &c, draws: setup.draws)
    XCTAssert(lossA.isFinite && lossA > 0, "\(setup.method.name): loss \(lossA)", file: file, line: line)
    XCTAssertEqual(lossA, lossB, "\(setup.method.name): step 5 twice", file: file, line: line)
    XCTAssertEqual(a.store.parameters.map(\.gradient), b.store.parameters.map(\.gradient), "\(setup.method.name): step 5's gradients twice", file: file, line: line)
    XCTAssertNotEqual(lossA, lossC, "\(setup.method.name): steps 5 and 6 drew the same images", file: file, line: line)
  }

  /// The directional derivative of the step's loss along its own gradient, by central
  /// differences, equals |g|: a wrong sign, scale or missing term of any parameter's gradient
  /// moves it. (Batch norm's running estimates change in each pass but play no part in a
  /// training-mode loss.)
  func checkGradientAgainstFiniteDifference(_ setup: MethodSetup, file: StaticString, line: UInt) {
    var network = setup.network
    _ = setup.method.lossAndGradients(step: 2, network: &network, draws: setup.draws)
    let gradient = network.store.parameters.map { $0.gradient.map(Double.init) }
    let norm = gradient.joined().reduce(0) { $0 + $1 * $1 }.squareRoot()
    XCTAssertGreaterThan(norm, 0, "\(setup.method.name): a zero gradient", file: file, line: line)
    let direction = gradient.map { $0.map { $0 / norm } }
    func loss(along t: Double) -> Double { setup.method.loss(step: 2, network: setup.network, draws: setup.draws, movedBy: t, along: direction) }
    let h = 1e-2
    let numeric = (loss(along: h) - loss(along: -h)) / (2 * h)
    XCTAssertEqual(numeric, norm, accuracy: 0.05 * norm, "\(setup.method.name): directional derivative \(numeric) against |g| = \(norm)", file: file, line: line)
  }

  /// Scores of a constructed episode: one row per query and one score per class, finite; the
  /// classes' order permutes the scores and nothing else; and a query that is one of the
  /// support images goes to its class wherever the method compares embeddings directly.
  func checkEpisodeScores(_ setup: MethodSetup, file: StaticString, line: UInt) throws {
    let model = NetworkEnsemble(members: [setup.network])
    let scorer = NetworkScorer(model: model, method: setup.method)
    let split = setup.split, n = split.size * split.size
    let images = [0, 1, 20, 21, 40, 41, 60]  // three classes of two images each, and one more
    let ink = images.flatMap { split.pixels[($0 * n)..<(($0 + 1) * n)] }
    let embedded = try ink.withUnsafeBufferPointer { try scorer.embed($0, count: images.count, size: split.size) }
    let support = [[embedded[0], embedded[1]], [embedded[2], embedded[3]], [embedded[4], embedded[5]]]
    let queries = [embedded[1], embedded[3], embedded[6]]
    let scores = try scorer.classScores(queries: queries, support: support)
    XCTAssertEqual(scores.map(\.count), [3, 3, 3], file: file, line: line)
    XCTAssert(scores.joined().allSatisfy(\.isFinite), "\(setup.method.name): \(scores)", file: file, line: line)
    let permuted = try scorer.classScores(queries: queries, support: [support[2], support[0], support[1]])
    for q in scores.indices {
      // Up to float32 rounding: a method that fits a classifier to the support set in float32
      // sums its softmax in another order when the classes come in another order.
      // A method that adapts the network to the episode (MAML) carries that rounding through ten
      // gradient steps, batch statistics summed in the other order: a looser bound, still far
      // below any difference a wrong class order makes.
      let tolerance = setup.method.scoresImages ? 1e-4 : 1e-5
      for (i, c) in [2, 0, 1].enumerated() { XCTAssertEqual(permuted[q][i], scores[q][c], accuracy: tolerance * max(1, abs(scores[q][c])), file: file, line: line) }
    }
    if setup.method.similarity != .head && setup.method.similarity != .relation {
      // A query identical to a support image: distance 0 or cosine 1 to it.
      let single = try scorer.classScores(queries: [embedded[0], embedded[2], embedded[4]], support: [[embedded[0]], [embedded[2]], [embedded[4]]])
      for q in 0..<3 { XCTAssertEqual(single[q].firstIndex(of: single[q].max()!), q, "\(setup.method.name): \(single[q])", file: file, line: line) }
    }
  }

  /// Four steps straight against two steps, a checkpoint (network and optimizer) written and
  /// read back, and two more: the same weights, bit for bit.
  func checkResumeEquality(_ setup: MethodSetup, file: StaticString, line: UInt) throws {
    let optimizerConfig = OptimizerConfig.adam(beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0)
    func steps(_ range: Range<Int>, _ network: inout EmbeddingNetwork, _ optimizer: inout Optimizer) {
      for step in range {
        _ = setup.method.lossAndGradients(step: step, network: &network, draws: setup.draws)
        optimizer.update(&network.store, learningRate: 1e-3)
      }
    }
    var straight = setup.network
    var straightOptimizer = Optimizer(optimizerConfig, store: straight.store)
    steps(0..<4, &straight, &straightOptimizer)
    var first = setup.network
    var firstOptimizer = Optimizer(optimizerConfig, store: first.store)
    steps(0..<2, &first, &firstOptimizer)
    let url = folder.appendingPathComponent("\(setup.method.name)-last.safetensors")
    try Checkpoint.write(network: first, optimizer: firstOptimizer, metadata: ["objective": setup.method.name], to: url)
    let read = try Checkpoint.read(url)
    var resumed = read.network
    var resumedOptimizer = try XCTUnwrap(read.optimizer, file: file, line: line)
    steps(2..<4, &resumed, &resumedOptimizer)
    XCTAssertEqual(resumed.store.parameters.map(\.value), straight.store.parameters.map(\.value), "\(setup.method.name): resumed weights differ", file: file, line: line)
    XCTAssertEqual(FewShotMethods.method(ofCheckpoint: read.metadata, model: NetworkEnsemble(members: [resumed])).name, setup.method.name, file: file, line: line)
  }
}

/// A small network of the method's kind, the training split of Omniglot's `images_background_small1`
/// at 16x16 and the method's draws from it (pairs and 5-way 1-shot episodes with 2 queries).
struct MethodSetup {
  let method: any FewShotMethod.Type
  let network: EmbeddingNetwork
  let split: ImageSplit
  let draws: TrainingDraws

  init(_ method: any FewShotMethod.Type) throws {
    self.method = method
    let dataset = OmniglotDataset(root: repositoryRoot.appendingPathComponent("dataset/omniglot"))
    split = try dataset.load(.backgroundSmall1, size: 16)
    var config = ModelConfig(backbone: .vgg16, inputSize: 16, batchNorm: true, blocks: [[4], [6]], headHidden: 8, headActivation: .relu, similarity: method.similarity)
    if method.classifiesTrainingClasses { config.classes = ClassPool(split: split).classes.count }
    network = EmbeddingNetwork(config: config, seed: 3)
    var training = try JSONDecoder().decode(
      TrainingConfig.self, from: Data(#"{"steps": 10, "pairsPerStep": 8, "optimizer": {"kind": "adam", "learningRate": 0.001}}"#.utf8))
    training.objective = method.name
    if method.trainsOnEpisodes { training.episode = EpisodeSpec(ways: 5, shots: 1, queries: 2, alphabetMode: .across) }
    XCTAssertEqual(method.problems(training).map(\.message), [], "the suite's settings must suit \(method.name)")
    let pool = ClassPool(split: split)
    let (background, seed) = (split, UInt64(9))
    draws = TrainingDraws(
      training: training, pairs: try PairSampler(pool: pool, seed: seed),
      episodes: try training.episode.map { try EpisodeSampler(pool: pool, spec: $0, seed: seed) }
    ) { images, step in
      Trainer.input(images, step: step, split: background, augmentation: .koch, seed: seed)
    }
  }
}

/// The repository's root (the dataset, the experiment files).
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
