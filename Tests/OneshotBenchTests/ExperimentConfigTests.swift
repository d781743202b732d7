import Episodes
import Experiments
import Foundation
import XCTest

/// Strict decoding of experiment files: every mistake names the file and the key path.
final class ExperimentConfigTests: XCTestCase {
  func write(_ json: String) throws -> String {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("exp-\(UUID().uuidString).json")
    try Data(json.utf8).write(to: url)
    addTeardownBlock { try? FileManager.default.removeItem(at: url) }
    return url.path
  }

  let valid = """
    {"name": "t", "model": {"backbone": "vgg16", "inputSize": 28, "blocks": [[4]]},
     "training": {"steps": 10, "optimizer": {"kind": "adam", "learningRate": 0.001}}}
    """

  func message(_ json: String) throws -> String {
    let path = try write(json)
    do {
      _ = try ExperimentConfig.load(path)
      return "no error"
    } catch let error as ConfigError {
      XCTAssertEqual(error.file, path)
      return error.keyPath + " | " + error.message
    }
  }

  func testValidFileGetsDefaults() throws {
    let config = try ExperimentConfig.load(try write(valid))
    XCTAssertEqual(config.threads, 2)
    XCTAssertEqual(config.training?.pairsPerStep, 32)
    XCTAssertEqual(config.training?.validation.spec.ways, 20)
    XCTAssertEqual(config.evaluation.map(\.name), ["lake20"])
    XCTAssertEqual(config.model.headActivation, .none)
    // The resolved configuration round-trips through its canonical JSON.
    let again = try JSONDecoder().decode(ExperimentConfig.self, from: Data(config.canonicalJSON.utf8))
    XCTAssertEqual(again, config)
  }

  func testEveryShippedExperimentFileIsValid() throws {
    let folder = repositoryRoot.appendingPathComponent("experiments")
    let files = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".json") }
    XCTAssertTrue(files.contains("vgg105.json") && files.contains("koch105.json") && files.contains("ci-smoke.json"))
    for file in files { XCTAssertNoThrow(try ExperimentConfig.load(folder.appendingPathComponent(file).path), file) }
  }

  func testEveryShippedExperimentFileHasARowInTheExperimentsReadme() throws {
    // The README's table is where a user picks a file; six files once shipped without a row.
    let folder = repositoryRoot.appendingPathComponent("experiments")
    let readme = try String(contentsOf: folder.appendingPathComponent("README.md"), encoding: .utf8)
    let files = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".json") }
    XCTAssertGreaterThan(files.count, 10)
    for file in files.sorted() {
      XCTAssertTrue(readme.contains("| `\(file)`") || readme.contains(", `\(file)`"), "experiments/README.md has no row for \(file)")
    }
  }

  func testConfigurationHashesOfTheCIBaselinesStayWhatTheyWere() throws {
    // The baselines froze runs of the committed files; the canonical form of a configuration
    // (and so its hash, the key runs are grouped and checked by) must not move with the code
    // (it moved once, on purpose, when threads left it; the baselines were restated then).
    for (file, baseline) in [("ci-smoke.json", "ci-smoke.json"), ("omniglot52-eval.json", "shipped-model.json")] {
      let config = try ExperimentConfig.load(repositoryRoot.appendingPathComponent("experiments/\(file)").path)
      let frozen = try Baseline.load(repositoryRoot.appendingPathComponent("experiments/baselines/\(baseline)").path)
      XCTAssertEqual(config.hash, frozen.configHash, file)
      // The hash covers the configuration without `threads` (issue 30: `sweep --threads 1` once
      // recorded a second configuration); the recorded configuration keeps the value it ran with.
      var other = config
      other.threads = config.threads == 1 ? 2 : 1
      XCTAssertEqual(other.hash, config.hash)
      XCTAssertNotEqual(other.canonicalJSON, config.canonicalJSON)
      XCTAssertFalse(config.identityJSON.contains("\"threads\""))
      XCTAssertEqual(config.identityJSON.count, config.canonicalJSON.count - "\"threads\":\(config.threads),".count)
      var seeded = config
      seeded.seed += 1
      XCTAssertNotEqual(seeded.hash, config.hash, "the seed is part of a configuration")
    }
  }

  func testOptimizerKeysOfTheOtherKindAreRefusedUnlessInert() throws {
    let sgd = valid.replacingOccurrences(of: #""kind": "adam", "learningRate": 0.001"#, with: #""kind": "sgd", "learningRate": 0.005, "weightDecay": 0.0005"#)
    let config = try ExperimentConfig.load(try write(sgd))
    XCTAssertEqual(config.training?.optimizer.config, .sgd(momentum: 0.9, nesterov: true, weightDecay: 0.0005))
    XCTAssertEqual(try ExperimentConfig.decode(Data(config.canonicalJSON.utf8), source: "round trip"), config)
    XCTAssertEqual(try message(sgd.replacingOccurrences(of: "0.0005", with: "0.0005, \"beta1\": 0.5")), "training.optimizer.beta1 | only the adam optimizer uses beta1; remove it")
    XCTAssertEqual(try message(valid.replacingOccurrences(of: "0.001}", with: "0.001, \"momentum\": 0.5}")), "training.optimizer.momentum | only the sgd optimizer uses momentum; remove it")
  }

  /// Koch et al.'s optimizer: each layer's own SGD settings and the momentum ramp, checked
  /// against the network the file builds, and refused for Adam.
  func testEachLayersOwnSettingsAreCheckedAgainstTheNetwork() throws {
    let layer = #"{"layer": "backbone.features.0", "learningRate": 0.05, "momentum": 0.8, "weightDecay": 0.001}"#
    let sgd = valid.replacingOccurrences(
      of: #""kind": "adam", "learningRate": 0.001"#, with: #""kind": "sgd", "learningRate": 0.01, "nesterov": false, "layers": [LAYER], "momentumRamp": {"start": 0.5, "steps": 5}"#)
    let config = try ExperimentConfig.load(try write(sgd.replacingOccurrences(of: "LAYER", with: layer)))
    guard case .sgd(_, _, _, _, let layers?, let ramp?) = config.training?.optimizer.config else { return XCTFail("no per-layer settings") }
    XCTAssertEqual(layers.map(\.layer), ["backbone.features.0"])
    XCTAssertEqual(ramp.steps, 5)
    XCTAssertEqual(try ExperimentConfig.decode(Data(config.canonicalJSON.utf8), source: "round trip"), config)
    // A misspelt layer would train at the base settings without a word: it is named, with the network's layers.
    XCTAssertEqual(
      try message(sgd.replacingOccurrences(of: "LAYER", with: layer.replacingOccurrences(of: "features", with: "feature"))),
      "training.optimizer.layers[0].layer | this network has no layer backbone.feature.0; its layers are backbone.features.0, head.0, head.1")
    XCTAssertEqual(
      try message(sgd.replacingOccurrences(of: "LAYER", with: layer + ", " + layer)), "training.optimizer.layers[1].layer | backbone.features.0 is listed twice; give each layer once")
    XCTAssertEqual(
      try message(sgd.replacingOccurrences(of: "LAYER", with: layer.replacingOccurrences(of: "0.8", with: "1.5"))), "training.optimizer.layers[0].momentum | within [0, 1); got 1.5")
    XCTAssert(try message(sgd.replacingOccurrences(of: "LAYER", with: layer.replacingOccurrences(of: "\"learningRate\"", with: "\"lr\""))).hasPrefix("training.optimizer.layers[0].lr | unknown"))
    XCTAssertEqual(
      try message(sgd.replacingOccurrences(of: "LAYER", with: layer).replacingOccurrences(of: "\"steps\": 5", with: "\"steps\": 0")),
      "training.optimizer.momentumRamp.steps | at least 1 step; got 0")
    XCTAssertEqual(
      try message(valid.replacingOccurrences(of: "0.001}", with: "0.001, \"layers\": [\(layer)]}")),
      "training.optimizer.layers | only the sgd optimizer takes layers; remove it, or use \"kind\": \"sgd\"")
  }

  func override(_ assignments: String...) throws -> ExperimentConfig {
    try ExperimentConfig.load(try write(valid), overrides: assignments.map(ConfigOverride.init))
  }

  func overrideMessage(_ assignments: String...) -> String {
    do {
      _ = try ExperimentConfig.load(try write(valid), overrides: assignments.map(ConfigOverride.init))
      return "no error"
    } catch let error as ConfigError {
      return error.keyPath + " | " + error.message
    } catch {
      return "\(error)"
    }
  }

  func testSetOverridesAnyKeyWithTheFilesChecks() throws {
    let config = try override("training.optimizer.learningRate=0.005", "seed=7", "training.precision=bf16", "model.blocks=[[8],[16]]")
    XCTAssertEqual(config.training?.optimizer.learningRate, 0.005)
    XCTAssertEqual(config.seed, 7)
    XCTAssertEqual(config.training?.precision, .bf16)
    XCTAssertEqual(config.model.blocks, [[8], [16]])
    // A section the file leaves out is created, with the section's defaults for the rest.
    XCTAssertEqual(try override("training.augmentation.probability=0.25").training?.augmentation?.probability, 0.25)
    XCTAssertEqual(try override("training.augmentation.probability=0.25").training?.augmentation?.shear, AffineAugmentation.koch.shear)
    // The resolved configuration is what a file with those values gives (same hash).
    let edited = try ExperimentConfig.load(try write(valid.replacingOccurrences(of: "\"steps\": 10", with: "\"steps\": 12")))
    XCTAssertEqual(try override("training.steps=12").hash, edited.hash)
    // Mistakes: the same one-line messages as in a file.
    XCTAssertEqual(overrideMessage("training.stepz=5"), "training.stepz | unknown key 'stepz'; allowed: adaptation, augmentation, convolutions, emaDecay, episode, fusion, logEvery, objective, optimizer, pairing, pairs, pairsPerStep, patience, precision, schedule, steps, stopAtTarget, targets, validation")
    XCTAssertEqual(overrideMessage("training.steps=ten"), "training.steps | wrong type; expected an integer")
    XCTAssertEqual(overrideMessage("training.steps=0"), "training.steps | between 1 and 100000000; got 0")
    XCTAssertEqual(overrideMessage("training.precision=fp8"), "training.precision | one of fp32, bf16, auto; got fp8")
    XCTAssertEqual(overrideMessage("evaluation.0.episodes=5"), "--set evaluation.0.episodes=5: evaluation is not a list, so it has no item 0")
    let listed = try write(valid.replacingOccurrences(of: "\"training\"", with: "\"evaluation\": [{\"protocol\": \"episodes\", \"spec\": {\"ways\": 5}}], \"training\""))
    XCTAssertEqual(try ExperimentConfig.load(listed, overrides: [try ConfigOverride("evaluation[0].episodes=50")]).evaluation[0].episodes, 50)
    XCTAssertThrowsError(try ExperimentConfig.load(listed, overrides: [try ConfigOverride("evaluation.3.episodes=5")])) {
      XCTAssertEqual("\($0)", "--set evaluation.3.episodes=5: evaluation has 1 item; index 3 is not one of them")
    }
    XCTAssertEqual(overrideMessage("name.first=x"), "--set name.first=x: name is not an object, so it has no key 'first'")
    XCTAssertThrowsError(try ConfigOverride("training.steps")) { XCTAssert("\($0)".contains("write it as key.path=value")) }
    XCTAssertThrowsError(try ConfigOverride("training..steps=3")) { XCTAssert("\($0)".contains("empty part")) }
  }

  /// Shortening a run with --set (glyphs.json with training.pairs=7680: 20 steps against its
  /// 100 warm-up steps) names, in its one line, the other key to set; a value the user set
  /// themselves gets the plain message.
  func testASetThatMakesTheFilesOtherValueImpossibleNamesTheKey() throws {
    let glyphs = repositoryRoot.appendingPathComponent("experiments/glyphs.json").path
    XCTAssertThrowsError(try ExperimentConfig.load(glyphs, overrides: [try ConfigOverride("training.pairs=7680")])) {
      XCTAssert("\($0)".hasSuffix("training.schedule.warmupSteps: within 0..<steps (20); got 100 (a key --set did not change: set it as well, --set training.schedule.warmupSteps=VALUE, or choose other --set values)"), "\($0)")
      XCTAssertFalse("\($0)".contains("\n"))
    }
    XCTAssertThrowsError(try ExperimentConfig.load(glyphs, overrides: [try ConfigOverride("training.pairs=7680"), try ConfigOverride("training.schedule.warmupSteps=30")])) {
      XCTAssert("\($0)".hasSuffix("training.schedule.warmupSteps: within 0..<steps (20); got 30"), "\($0)")
    }
    XCTAssertEqual(try ExperimentConfig.load(glyphs, overrides: [try ConfigOverride("training.pairs=7680"), try ConfigOverride("training.schedule.warmupSteps=5")]).training?.steps, 20)
    // A mistake of the file itself (a key this build does not know) is the file's, with or
    // without --set: the hint to set it as well misled (it said to --set an unknown key).
    let file = FileManager.default.temporaryDirectory.appendingPathComponent("unknown-key-\(UUID().uuidString).json")
    defer { try? FileManager.default.removeItem(at: file) }
    let text = try String(contentsOfFile: glyphs, encoding: .utf8).replacingOccurrences(of: "\"inputSize\"", with: "\"blockPaddin\": [1], \"inputSize\"")
    try text.write(to: file, atomically: true, encoding: .utf8)
    for overrides in [[], [try ConfigOverride("training.pairs=76800")]] {
      XCTAssertThrowsError(try ExperimentConfig.load(file.path, overrides: overrides)) {
        XCTAssert("\($0)".contains("model.blockPaddin: unknown key 'blockPaddin'") && !"\($0)".contains("--set"), "\($0)")
      }
    }
  }

  func testMistakesNameTheKeyPath() throws {
    XCTAssertEqual(try message(valid.replacingOccurrences(of: "\"learningRate\"", with: "\"learningRat\"")).prefix(39), "training.optimizer.learningRat | unknow")
    XCTAssert(try message(valid.replacingOccurrences(of: "0.001", with: "-0.1")).hasPrefix("training.optimizer.learningRate | positive"))
    XCTAssert(try message(valid.replacingOccurrences(of: "\"steps\": 10", with: "\"steps\": \"ten\"")).hasPrefix("training.steps | wrong type; expected an integer"))
    XCTAssert(try message(valid.replacingOccurrences(of: "\"inputSize\": 28", with: "\"inputSize\": 4")).hasPrefix("model.inputSize |"))
    XCTAssertEqual(try message(valid.replacingOccurrences(of: "vgg16", with: "vgg19")), "model.backbone | one of vgg16, koch; got vgg19")
    XCTAssertEqual(
      try message(valid.replacingOccurrences(of: "\"inputSize\": 28", with: "\"inputSize\": 28, \"relationModule\": \"conv\"")), "model.relationModule | one of linear, convolutional; got conv")
    XCTAssert(try message(valid.replacingOccurrences(of: "\"name\": \"t\",", with: "")).hasPrefix("name | missing"))
    let impossible = valid.replacingOccurrences(of: "}}}", with: "}}, \"evaluation\": [{\"protocol\": \"episodes\", \"spec\": {\"ways\": 5, \"shots\": 15, \"queries\": 6}}]}")
    let impossibleMessage = try message(impossible)
    XCTAssert(impossibleMessage.hasPrefix("evaluation[0].spec.shots + queries | at most 20"), impossibleMessage)
    let oneWay = valid.replacingOccurrences(of: "}}}", with: "}}, \"evaluation\": [{\"protocol\": \"episodes\", \"spec\": {\"ways\": 1}}]}")
    XCTAssert(try message(oneWay).hasPrefix("evaluation[0].spec.ways | between 2 and 10000"))
    XCTAssert(try message("{ not json").hasPrefix(" | not valid JSON"))
    // Numbers a key's type cannot hold: Foundation names no key for them, the harness does.
    let fraction = try message(valid.replacingOccurrences(of: "\"steps\": 10", with: "\"steps\": 10.5"))
    XCTAssert(fraction.hasPrefix("training.steps | the number 10.5 does not fit this key"), fraction)
    let negative = try message(valid.replacingOccurrences(of: "\"name\": \"t\",", with: "\"name\": \"t\", \"seed\": -1,"))
    XCTAssert(negative.hasPrefix("seed | the number -1 does not fit"), negative)
    let twoBad = valid.replacingOccurrences(of: "\"inputSize\": 28", with: "\"inputSize\": 1e30").replacingOccurrences(of: "\"steps\": 10", with: "\"steps\": 0.5")
    XCTAssert(try message(twoBad).hasPrefix("model.inputSize | the number 1e30"), "the first in the file is named")
    XCTAssert(try message(valid.replacingOccurrences(of: "\"steps\": 10", with: "\"steps\": 10, \"pairs\": 100")).contains("exactly one of"))
    XCTAssertEqual(try message(valid.replacingOccurrences(of: "\"steps\": 10", with: "\"steps\": 10, \"precision\": \"fp16\"")), "training.precision | one of fp32, bf16, auto; got fp16")
    XCTAssert(try message(valid.replacingOccurrences(of: "\"steps\": 10", with: "\"steps\": 10, \"emaDecay\": 1")).hasPrefix("training.emaDecay | the moving average's decay, in (0, 1)"))
    // Every key of a fixed set of words names its words, the two "kind"s apart.
    XCTAssertEqual(overrideMessage("training.pairing=pairs"), "training.pairing | one of independent, groups, batch; got pairs")
    XCTAssertEqual(overrideMessage("training.convolutions=fast"), "training.convolutions | one of direct, auto; got fast")
    XCTAssertEqual(overrideMessage("training.fusion=fast"), "training.fusion | one of auto, fused, unfused; got fast")
    XCTAssertEqual(overrideMessage("model.resampling=bicubic"), "model.resampling | one of area, nearest; got bicubic")
    XCTAssertEqual(overrideMessage("model.initialization=xavier"), "model.initialization | one of kaiming, pytorch, koch; got xavier")
    XCTAssertEqual(overrideMessage("training.optimizer.kind=rmsprop"), "training.optimizer.kind | one of adam, sgd; got rmsprop")
    XCTAssertEqual(overrideMessage("training.schedule={\"kind\": \"linear\"}"), "training.schedule.kind | one of constant, step, cosine; got linear")
  }

  func testFusionDefaultsToAutoAndIsWrittenOnlyWhenPinned() throws {
    let plain = try ExperimentConfig.load(try write(valid))
    XCTAssertEqual(plain.training?.fusion, .auto)
    XCTAssertFalse(plain.canonicalJSON.contains("fusion"), "a file without the key keeps its configuration hash")
    let pinned = try ExperimentConfig.load(try write(valid.replacingOccurrences(of: "\"steps\": 10", with: "\"steps\": 10, \"fusion\": \"unfused\"")))
    XCTAssertEqual(pinned.training?.fusion, .unfused)
    XCTAssert(pinned.canonicalJSON.contains("\"fusion\":\"unfused\""), pinned.canonicalJSON)
  }

  /// A resumed run trains as it started: the recorded precision and fusion; a run recorded before
  /// the fused layer existed (no `fusion.resolved` tag) ran oneDNN's two primitives.
  func testAResumedRunKeepsItsRecordedPrecisionAndFusion() {
    let fused = PrecisionProbe.Outcome.recorded(tags: [("precision.resolved", "bf16"), ("fusion.resolved", "fused")], fixed: nil)
    XCTAssertEqual(fused?.chosen, .bf16)
    XCTAssertEqual(fused?.fusesNormalizationPooling, true)
    XCTAssertEqual(fused?.fusionTag, "fused")
    let older = PrecisionProbe.Outcome.recorded(tags: [("precision.resolved", "fp32")], fixed: .fp32)
    XCTAssertEqual(older?.fused, false)
    XCTAssertEqual(older?.fusesNormalizationPooling, false, "recorded before the fused layer: unfused")
    let none = PrecisionProbe.Outcome.recorded(tags: [("precision.resolved", "fp32"), ("fusion.resolved", "none")], fixed: nil)
    XCTAssertNil(none?.fused)
    XCTAssertEqual(none?.fusionTag, "none")
    XCTAssertEqual(PrecisionProbe.Outcome.recorded(tags: [], fixed: .bf16)?.chosen, .bf16, "no tag: the file's fixed precision")
    XCTAssertNil(PrecisionProbe.Outcome.recorded(tags: [], fixed: nil), "auto and nothing recorded: probe again")
  }

  func testPrecisionDefaultsToFP32AndKeepsOldConfigurationHashes() throws {
    let plain = try ExperimentConfig.load(try write(valid))
    XCTAssertEqual(plain.training?.precision, .fp32)
    XCTAssertFalse(plain.canonicalJSON.contains("precision"), "fp32 is not written, so runs recorded before the key existed keep their hash")
    let bf16 = try ExperimentConfig.load(try write(valid.replacingOccurrences(of: "\"steps\": 10", with: "\"steps\": 10, \"precision\": \"bf16\"")))
    XCTAssertEqual(bf16.training?.precision, .bf16)
    XCTAssertEqual(try JSONDecoder().decode(ExperimentConfig.self, from: Data(bf16.canonicalJSON.utf8)), bf16)
  }
}
