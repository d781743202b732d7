import Foundation
import XCTest

@testable import oneshot_bench

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
    XCTAssertEqual(config.training.pairsPerStep, 32)
    XCTAssertEqual(config.training.validation.spec.ways, 20)
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

  func testConfigurationHashesOfTheCIBaselinesStayWhatTheyWere() throws {
    // The baselines froze runs of the committed files; the canonical form of a configuration
    // (and so its hash, the key runs are grouped and checked by) must not move with the code.
    for (file, baseline) in [("ci-smoke.json", "ci-smoke.json"), ("omniglot52-long.json", "shipped-model.json")] {
      let config = try ExperimentConfig.load(repositoryRoot.appendingPathComponent("experiments/\(file)").path)
      let frozen = try Baseline.load(repositoryRoot.appendingPathComponent("experiments/baselines/\(baseline)").path)
      XCTAssertEqual(config.hash, frozen.configHash, file)
    }
  }

  func testOptimizerKeysOfTheOtherKindAreRefusedUnlessInert() throws {
    let sgd = valid.replacingOccurrences(of: #""kind": "adam", "learningRate": 0.001"#, with: #""kind": "sgd", "learningRate": 0.005, "weightDecay": 0.0005"#)
    let config = try ExperimentConfig.load(try write(sgd))
    XCTAssertEqual(config.training.optimizer.config, .sgd(momentum: 0.9, nesterov: true, weightDecay: 0.0005))
    XCTAssertEqual(try ExperimentConfig.decode(Data(config.canonicalJSON.utf8), source: "round trip"), config)
    XCTAssertEqual(try message(sgd.replacingOccurrences(of: "0.0005", with: "0.0005, \"beta1\": 0.5")), "training.optimizer.beta1 | only the adam optimizer uses beta1; remove it")
    XCTAssertEqual(try message(valid.replacingOccurrences(of: "0.001}", with: "0.001, \"momentum\": 0.5}")), "training.optimizer.momentum | only the sgd optimizer uses momentum; remove it")
  }

  func testMistakesNameTheKeyPath() throws {
    XCTAssertEqual(try message(valid.replacingOccurrences(of: "\"learningRate\"", with: "\"learningRat\"")).prefix(39), "training.optimizer.learningRat | unknow")
    XCTAssert(try message(valid.replacingOccurrences(of: "0.001", with: "-0.1")).hasPrefix("training.optimizer.learningRate | positive"))
    XCTAssert(try message(valid.replacingOccurrences(of: "\"steps\": 10", with: "\"steps\": \"ten\"")).hasPrefix("training.steps | wrong type; expected an integer"))
    XCTAssert(try message(valid.replacingOccurrences(of: "\"inputSize\": 28", with: "\"inputSize\": 4")).hasPrefix("model.inputSize |"))
    XCTAssert(try message(valid.replacingOccurrences(of: "vgg16", with: "vgg19")).hasPrefix("model.backbone | not one of the allowed values"))
    XCTAssert(try message(valid.replacingOccurrences(of: "\"name\": \"t\",", with: "")).hasPrefix("name | missing"))
    let impossible = valid.replacingOccurrences(of: "}}}", with: "}}, \"evaluation\": [{\"protocol\": \"episodes\", \"spec\": {\"ways\": 5, \"shots\": 15, \"queries\": 6}}]}")
    let impossibleMessage = try message(impossible)
    XCTAssert(impossibleMessage.hasPrefix("evaluation[0].spec.shots + queries | at most 20"), impossibleMessage)
    let oneWay = valid.replacingOccurrences(of: "}}}", with: "}}, \"evaluation\": [{\"protocol\": \"episodes\", \"spec\": {\"ways\": 1}}]}")
    XCTAssert(try message(oneWay).hasPrefix("evaluation[0].spec.ways | at least 2"))
    XCTAssert(try message("{ not json").hasPrefix(" | not valid JSON"))
    XCTAssert(try message(valid.replacingOccurrences(of: "\"steps\": 10", with: "\"steps\": 10, \"pairs\": 100")).contains("exactly one of"))
    XCTAssert(try message(valid.replacingOccurrences(of: "\"steps\": 10", with: "\"steps\": 10, \"precision\": \"fp16\"")).hasPrefix("training.precision | not one of the allowed values"))
  }

  func testPrecisionDefaultsToFP32AndKeepsOldConfigurationHashes() throws {
    let plain = try ExperimentConfig.load(try write(valid))
    XCTAssertEqual(plain.training.precision, .fp32)
    XCTAssertFalse(plain.canonicalJSON.contains("precision"), "fp32 is not written, so runs recorded before the key existed keep their hash")
    let bf16 = try ExperimentConfig.load(try write(valid.replacingOccurrences(of: "\"steps\": 10", with: "\"steps\": 10, \"precision\": \"bf16\"")))
    XCTAssertEqual(bf16.training.precision, .bf16)
    XCTAssertEqual(try JSONDecoder().decode(ExperimentConfig.self, from: Data(bf16.canonicalJSON.utf8)), bf16)
  }
}
