import Episodes
import Experiments
import Foundation
import Model
import ResultsStore
import TestSupport
import XCTest

/// The second method (prototypical networks) and the literature's split, end to end as a user
/// runs them: training, resume, scoring, the checkpoint's record and every refusal.
final class MethodsTests: TemporaryFolderTestCase {




  /// A tiny prototypical network (28x28, blocks [[4], [8]], batch norm, no head) trained on
  /// 5-way 1-shot 2-query episodes of `split`'s training classes.
  func experiment(
    split: String = "lake", steps: Int = 30, evaluation: String? = nil, objective: String = "prototypical", similarity: String = "euclidean", classes: Int? = nil
  ) throws -> String {
    let protocols =
      evaluation ?? """
      [{"protocol": "lake20"},
       {"protocol": "episodes", "split": "evaluation", "episodes": 10, "seed": 7, "spec": {"ways": 5, "shots": 5, "queries": 2}}]
      """
    let json = """
      {"name": "tiny-proto", "seed": 3, "threads": 2,
       "data": {"path": "\(repositoryRoot.appendingPathComponent("dataset/omniglot").path)", "split": "\(split)"},
       "model": {"backbone": "vgg16", "inputSize": 28, "batchNorm": true, "blocks": [[4], [8]], "similarity": "\(similarity)"\(classes.map { ", \"classes\": \($0)" } ?? "")},
       "training": {"objective": "\(objective)", "episode": {"ways": 5, "shots": 1, "queries": 2, "alphabetMode": "across"},
                    "steps": \(steps), "optimizer": {"kind": "adam", "learningRate": 0.003}, "augmentation": {"probability": 0.5},
                    "validation": {"every": 15, "episodes": 4, "spec": {"ways": 5, "shots": 1, "queries": 2}}, "logEvery": 5},
       "evaluation": \(protocols)}
      """
    let path = folder.appendingPathComponent("tiny-\(objective)-\(split)-\(classes ?? 0).json").path
    try Data(json.utf8).write(to: URL(fileURLWithPath: path))
    return path
  }

  func testPrototypicalTrainingResumesExactlyAndItsCheckpointSaysWhatItIs() throws {
    let config = try experiment()
    let runs = folder.appendingPathComponent("checkpoints")
    let held = try startHeldRun(["run", config, "--store", storePath, "--runs", runs.path], runs: runs, holdAtStep: 15, currentDirectory: folder)
    kill(held.process.processIdentifier, SIGINT)
    held.process.waitUntilExit()
    XCTAssertEqual(held.process.terminationStatus, 130, held.errorText)
    let resumed = runCLI(["run", "--resume", held.runID, "--store", storePath, "--runs", runs.path], currentDirectory: folder)
    XCTAssertEqual(resumed.code, 0, resumed.error)
    let straight = runCLI(["run", config, "--store", storePath, "--runs", runs.path], currentDirectory: folder)
    XCTAssertEqual(straight.code, 0, straight.error)
    XCTAssert(straight.error.contains("images/s"), "the prototypical objective counts images a second: \(straight.error)")
    let store = try ResultsStore(path: storePath)
    let other = try XCTUnwrap(try store.listRuns().first { $0.id != held.runID }).id
    // Training is a pure function of (seed, step): episodes, distortions and all.
    XCTAssertEqual(try store.results(runID: held.runID).map(\.accuracy), try store.results(runID: other).map(\.accuracy))
    XCTAssertEqual(try store.metrics(runID: held.runID, key: MetricKey.validationAccuracy).map(\.value), try store.metrics(runID: other, key: MetricKey.validationAccuracy).map(\.value))
    XCTAssertEqual(try store.metrics(runID: other, key: MetricKey.imagesPerSecond).count, 6)
    XCTAssertEqual(Set(try store.results(runID: other).map(\.protocolName)), ["lake20", "evaluation-5way-5shot-within"])
    // Better than chance (5%) on Lake's 20-way runs after 30 episodes of 5 classes.
    XCTAssertGreaterThan(try XCTUnwrap(try store.results(runID: other).first { $0.protocolName == "lake20" }).accuracy, 0.10)

    let best = runs.appendingPathComponent(other).appendingPathComponent("best.safetensors")
    let (model, metadata) = try Checkpoint.readModel(best)
    XCTAssertEqual(metadata["objective"], "prototypical")
    XCTAssertEqual(model.config.similarity, .euclidean)
    // predict prints squared distances for it: an image against itself is at distance 0.
    let image = folder.appendingPathComponent("a.png")
    try Data(GrayImage(width: 28, height: 28, pixels: (0..<784).map { UInt8(($0 * 37) % 256) }).encodePNG()).write(to: image)
    let other2 = folder.appendingPathComponent("b.png")
    try Data(GrayImage(width: 28, height: 28, pixels: (0..<784).map { UInt8(($0 * 11) % 256) }).encodePNG()).write(to: other2)
    let ranked = runCLI(["predict", "--checkpoint", best.path, "--query", image.path, "--support", folder.path, "--format", "csv"])
    XCTAssertEqual(ranked.code, 0, ranked.error)
    let lines = ranked.output.components(separatedBy: "\r\n")
    XCTAssertEqual(lines[0], "rank,squared distance,image")
    XCTAssertEqual(lines[1], "1,0.000000,a.png")
    // An ensemble of two prototypical networks scores like any checkpoint.
    let ensemble = folder.appendingPathComponent("ensemble.safetensors").path
    let made = runCLI(["ensemble", best.path, runs.appendingPathComponent(held.runID).appendingPathComponent("best.safetensors").path, "--output", ensemble])
    XCTAssertEqual(made.code, 0, made.error)
    let scored = runCLI(["run", config, "--eval-only", "--checkpoint", ensemble, "--store", storePath], currentDirectory: folder)
    XCTAssertEqual(scored.code, 0, scored.error)
    XCTAssert(scored.error.contains("lake20"), scored.error)
    // predict on the ensemble prints the members' mean squared distance: its two members are the
    // same network (a resumed run equals the uninterrupted one), so the value is the single
    // network's (it used to be divided by the member count a second time: half of it).
    let single = runCLI(["predict", "--checkpoint", best.path, image.path, other2.path])
    let both = runCLI(["predict", "--checkpoint", ensemble, image.path, other2.path])
    let (one, two) = (try XCTUnwrap(Double(single.output.trimmingCharacters(in: .whitespacesAndNewlines))), try XCTUnwrap(Double(both.output.trimmingCharacters(in: .whitespacesAndNewlines))))
    XCTAssertGreaterThan(one, 0)
    XCTAssertEqual(two, one, accuracy: 1e-5 * max(1, one), "ensemble \(two) against its members' \(one)")
  }

  /// Matching networks and the fine-tuning baseline as a user meets them: a file, a run stopped
  /// with Ctrl-C and resumed that equals one never stopped, the checkpoint's objective, `predict`
  /// with the method's pair value, and an eval-only run of the checkpoint.
  func testMatchingNetworksEndToEnd() throws { try checkEndToEnd(objective: "matching", similarity: "cosine", pairHeading: "cosine similarity", selfValue: "1.000000") }

  /// Relation networks: a learned module, so an image's score against itself is whatever it
  /// learned (between 0 and 1), not a fixed value.
  func testRelationNetworksEndToEnd() throws { try checkEndToEnd(objective: "relation", similarity: "relation", steps: 80, pairHeading: "relation score", selfValue: nil) }

  /// First-order MAML: scoring adapts the network to each episode's images, which the scorer
  /// hands it beside the embeddings; `predict` compares the meta-trained embeddings.
  /// It trains with an adaptation of its own (`training.adaptation`), which the eval-only run of
  /// a file without it must read from the checkpoint to score as the run did.
  func testMAMLEndToEnd() throws {
    let adaptation = ["training.adaptation.learningRate=0.3", "training.adaptation.steps=2", "training.adaptation.scoringSteps=3"]
    let best = try checkEndToEnd(objective: "maml", similarity: "euclidean", sets: adaptation, pairHeading: "squared distance", selfValue: "0.000000")
    // A file that does not train MAML, scoring a MAML checkpoint with test-time copies: the
    // method is known only from the checkpoint, and the copies are refused before anything is
    // recorded.
    let store = try ResultsStore(path: storePath)
    let before = try store.listRuns().count
    let refused = runCLI(
      ["run", try experiment(steps: 4), "--eval-only", "--checkpoint", best.path, "--store", storePath, "--set", "evaluation.1.augmentedCopies=4"], currentDirectory: folder)
    XCTAssertNotEqual(refused.code, 0, refused.error)
    XCTAssert(refused.error.contains("the checkpoint's maml method adapts the network to each episode's images") && refused.error.contains("remove augmentedCopies"), refused.error)
    XCTAssertEqual(try store.listRuns().count, before, "no run row for a refused run")
    // The record: the trained run's settings, and how the eval-only run adapted.
    func detailed() throws -> [RunDetail] { try store.listRuns().map { try store.run($0.id) } }
    func tag(_ run: RunDetail, _ key: String) -> String? { run.tags.first { $0.key == key }?.value }
    let runs = try detailed()
    let trainedRuns = runs.filter { tag($0, TagKey.mode) == nil && $0.summary.status == .completed }
    XCTAssertEqual(trainedRuns.count, 2, "the resumed run and the straight one")
    let trained = try XCTUnwrap(trainedRuns.first)
    XCTAssertEqual(trained.params.first { $0.key == "training.adaptation.scoringSteps" }?.value, "3")
    let evaluated = try XCTUnwrap(runs.first { tag($0, TagKey.mode) == "eval-only" })
    XCTAssertEqual(tag(evaluated, TagKey.scoringAdaptation), "step 0.3, 3 steps")
    XCTAssertEqual(tag(evaluated, TagKey.scoringMethod), "maml")
    // A file that sets training.adaptation scores with it (as a run of the file would), says so,
    // and records it: the run's recorded configuration and its scoring agree.
    let rescored = runCLI(
      [
        "run", try experiment(steps: 4, objective: "maml"), "--eval-only", "--checkpoint", best.path, "--store", storePath,
        "--set", "training.adaptation.learningRate=0.3", "--set", "training.adaptation.scoringSteps=1",
      ], currentDirectory: folder)
    XCTAssertEqual(rescored.code, 0, rescored.error)
    XCTAssert(
      (rescored.output + rescored.error).contains("scoring with the file's training.adaptation (step 0.3, 1 steps); the checkpoint's run scored with step 0.3, 3 steps"),
      rescored.output + rescored.error)
    let rescoredRun = try XCTUnwrap(
      try detailed().first { tag($0, TagKey.mode) == "eval-only" && $0.params.contains { $0.key == "training.adaptation.scoringSteps" && $0.value == "1" } })
    XCTAssertEqual(tag(rescoredRun, TagKey.scoringAdaptation), "step 0.3, 1 steps")
    // An ensemble of two MAML checkpoints is scored by MAML, each member as it was trained: its
    // two members are the same network (the resumed run equals the straight one), so it scores
    // what one does. (The ensemble kept neither the objective nor the configuration: it was
    // scored as prototypes.)
    let checkpoints = best.deletingLastPathComponent().deletingLastPathComponent()
    let ensemble = folder.appendingPathComponent("maml-ensemble.safetensors").path
    let made = runCLI(["ensemble"] + trainedRuns.map { checkpoints.appendingPathComponent($0.summary.id).appendingPathComponent("best.safetensors").path } + ["--output", ensemble])
    XCTAssertEqual(made.code, 0, made.error)
    let scored = runCLI(["run", try experiment(steps: 4), "--eval-only", "--checkpoint", ensemble, "--store", storePath], currentDirectory: folder)
    XCTAssertEqual(scored.code, 0, scored.error)
    let ensembleRun = try XCTUnwrap(try detailed().first { tag($0, "ensemble_members") == "2" })
    XCTAssertEqual(tag(ensembleRun, TagKey.scoringAdaptation), "step 0.3, 3 steps")
    // Its file trains prototypical networks: the leaderboard names the method that scored it.
    XCTAssertEqual(tag(ensembleRun, TagKey.scoringMethod), "maml")
    let board = runCLI(["report", "--leaderboard", "--store", storePath, "--format", "csv"], currentDirectory: folder)
    XCTAssertEqual(board.code, 0, board.error)
    XCTAssertFalse(board.output.contains("prototypical"), "every run here was scored by MAML: \(board.output)")
    let single = trained.results.map(\.accuracy), both = ensembleRun.results.map(\.accuracy)
    XCTAssertEqual(single.count, both.count)
    for (a, b) in zip(single, both) { XCTAssertEqual(a, b, accuracy: 1e-9) }
    // Checkpoints of two objectives make no ensemble.
    let proto = runCLI(["run", try experiment(steps: 4), "--store", storePath, "--runs", checkpoints.path], currentDirectory: folder)
    XCTAssertEqual(proto.code, 0, proto.error)
    let protoRun = try XCTUnwrap(try detailed().first { $0.params.contains { $0.key == "training.objective" && $0.value == "prototypical" } && tag($0, TagKey.mode) == nil })
    let protoCheckpoint = checkpoints.appendingPathComponent(protoRun.summary.id).appendingPathComponent("best.safetensors").path
    // A file's adaptation for a checkpoint whose method does not adapt: scored, and said unused.
    let unadapted = runCLI(
      ["run", try experiment(steps: 4, objective: "maml"), "--eval-only", "--checkpoint", protoCheckpoint, "--store", storePath, "--set", "training.adaptation.scoringSteps=2"],
      currentDirectory: folder)
    XCTAssertEqual(unadapted.code, 0, unadapted.error)
    XCTAssert(
      (unadapted.output + unadapted.error).contains("the checkpoint's prototypical method does not adapt to episodes: the file's training.adaptation is not used"),
      unadapted.output + unadapted.error)
    let mixed = runCLI(
      ["ensemble", best.path, protoCheckpoint, "--output", folder.appendingPathComponent("mixed.safetensors").path])
    XCTAssertNotEqual(mixed.code, 0)
    XCTAssert(mixed.error.contains("was trained with the prototypical objective") && mixed.error.contains("list checkpoints of one objective"), mixed.error)
  }

  /// A checkpoint from before `objective` was recorded ensembles with a newer one that names its
  /// similarity's default method: the two are compared as methods, not as metadata.
  func testAnOlderCheckpointEnsemblesWithANewerOneOfItsMethod() throws {
    let config = ModelConfig(backbone: .vgg16, inputSize: 16, blocks: [[4], [8]], headHidden: 5)
    let old = folder.appendingPathComponent("old.safetensors"), new = folder.appendingPathComponent("new.safetensors")
    try Checkpoint.write(network: EmbeddingNetwork(config: config, seed: 1), optimizer: nil, metadata: [:], to: old)
    try Checkpoint.write(network: EmbeddingNetwork(config: config, seed: 2), optimizer: nil, metadata: ["objective": "pairs"], to: new)
    let made = runCLI(["ensemble", old.path, new.path, "--output", folder.appendingPathComponent("both.safetensors").path])
    XCTAssertEqual(made.code, 0, made.error)
  }

  func testFineTuningEndToEnd() throws {
    // Without the classifier's size the file is refused; with a wrong one the run says the right one.
    let refused = runCLI(["run", try experiment(objective: "finetune", similarity: "euclidean"), "--store", storePath], currentDirectory: folder)
    XCTAssertEqual(refused.code, 2, refused.error)
    XCTAssert(refused.error.contains("model.classes") && refused.error.contains("set \"classes\""), refused.error)
    let wrong = runCLI(["run", try experiment(objective: "finetune", similarity: "euclidean", classes: 7), "--store", storePath], currentDirectory: folder)
    XCTAssertEqual(wrong.code, 2, wrong.error)
    let hint = try XCTUnwrap(wrong.error.range(of: #"set "classes": \d+"#, options: .regularExpression), wrong.error)
    let classes = try XCTUnwrap(Int(wrong.error[hint].split(separator: " ").last!))
    XCTAssertEqual(try ResultsStore(path: storePath).listRuns().filter { $0.status == .completed }.count, 0)
    let checkpoint = try checkEndToEnd(objective: "finetune", similarity: "euclidean", classes: classes, pairHeading: "squared distance", selfValue: "0.000000")
    XCTAssertEqual(try Checkpoint.readModel(checkpoint).model.config.classes, classes)
  }

  /// Returns the straight run's best checkpoint.
  @discardableResult
  func checkEndToEnd(
    objective: String, similarity: String, classes: Int? = nil, steps: Int = 30, sets: [String] = [], pairHeading: String, selfValue: String?, file: StaticString = #filePath,
    line: UInt = #line
  ) throws -> URL {
    let config = try experiment(steps: steps, objective: objective, similarity: similarity, classes: classes)
    let runs = folder.appendingPathComponent("checkpoints")
    let setting = sets.flatMap { ["--set", $0] }
    let held = try startHeldRun(["run", config, "--store", storePath, "--runs", runs.path] + setting, runs: runs, holdAtStep: 15, currentDirectory: folder)
    kill(held.process.processIdentifier, SIGINT)
    held.process.waitUntilExit()
    XCTAssertEqual(held.process.terminationStatus, 130, held.errorText, file: file, line: line)
    let resumed = runCLI(["run", "--resume", held.runID, "--store", storePath, "--runs", runs.path], currentDirectory: folder)
    XCTAssertEqual(resumed.code, 0, resumed.error, file: file, line: line)
    let straight = runCLI(["run", config, "--store", storePath, "--runs", runs.path] + setting, currentDirectory: folder)
    XCTAssertEqual(straight.code, 0, straight.error, file: file, line: line)
    let store = try ResultsStore(path: storePath)
    let other = try XCTUnwrap(try store.listRuns().first { $0.id != held.runID && $0.status == .completed }, file: file, line: line).id
    XCTAssertEqual(try store.results(runID: held.runID).map(\.accuracy), try store.results(runID: other).map(\.accuracy), "\(objective): resumed and straight runs differ", file: file, line: line)
    XCTAssertEqual(Set(try store.results(runID: other).map(\.protocolName)), ["lake20", "evaluation-5way-5shot-within"], file: file, line: line)
    XCTAssertGreaterThan(try XCTUnwrap(try store.results(runID: other).first { $0.protocolName == "lake20" }, file: file, line: line).accuracy, 0.10, file: file, line: line)
    let best = runs.appendingPathComponent(other).appendingPathComponent("best.safetensors")
    XCTAssertEqual(try Checkpoint.readModel(best).metadata["objective"], objective, file: file, line: line)
    let image = folder.appendingPathComponent("a.png")
    try Data(GrayImage(width: 28, height: 28, pixels: (0..<784).map { UInt8(($0 * 37) % 256) }).encodePNG()).write(to: image)
    try Data(GrayImage(width: 28, height: 28, pixels: (0..<784).map { UInt8(($0 * 11) % 256) }).encodePNG()).write(to: folder.appendingPathComponent("b.png"))
    let ranked = runCLI(["predict", "--checkpoint", best.path, "--query", image.path, "--support", folder.path, "--format", "csv"])
    XCTAssertEqual(ranked.code, 0, ranked.error, file: file, line: line)
    let lines = ranked.output.components(separatedBy: "\r\n")
    XCTAssertEqual(lines[0], "rank,\(pairHeading),image", file: file, line: line)
    if let selfValue {
      XCTAssertEqual(lines[1], "1,\(selfValue),a.png", file: file, line: line)
    } else {
      let values = lines[1...2].map { Double($0.split(separator: ",")[1]) ?? -1 }
      XCTAssert(values.allSatisfy { (0...1).contains($0) } && values[0] >= values[1], "\(lines)", file: file, line: line)
    }
    let scored = runCLI(["run", config, "--eval-only", "--checkpoint", best.path, "--store", storePath], currentDirectory: folder)
    XCTAssertEqual(scored.code, 0, scored.error, file: file, line: line)
    let evaluated = try XCTUnwrap(try store.listRuns().first { $0.id != held.runID && $0.id != other && $0.status == .completed }, file: file, line: line).id
    XCTAssertEqual(try store.results(runID: evaluated).map(\.accuracy), try store.results(runID: other).map(\.accuracy), "\(objective): eval-only scores differ from the run's", file: file, line: line)
    return best
  }

  /// Test-time copies as a user meets them: an eval-only run of a checkpoint with
  /// `augmentedCopies` keeps the protocol's name, so `compare` pairs it with the plain run on the
  /// same episodes; the report marks the run and the leaderboard its row.
  func testTestTimeCopiesAreScoredPairedAndMarked() throws {
    let config = try experiment(steps: 4)
    let runs = folder.appendingPathComponent("checkpoints")
    let trained = runCLI(["run", config, "--store", storePath, "--runs", runs.path], currentDirectory: folder)
    XCTAssertEqual(trained.code, 0, trained.error)
    let store = try ResultsStore(path: storePath)
    let trainedID = try XCTUnwrap(try store.listRuns().first).id
    let best = runs.appendingPathComponent(trainedID).appendingPathComponent("best.safetensors").path
    let copied = runCLI(["run", config, "--eval-only", "--checkpoint", best, "--store", storePath, "--set", "evaluation.1.augmentedCopies=4"], currentDirectory: folder)
    XCTAssertEqual(copied.code, 0, copied.error)
    let copiedID = try XCTUnwrap(try store.listRuns().first { $0.id != trainedID }).id
    XCTAssertEqual(Set(try store.results(runID: copiedID).map(\.protocolName)), ["lake20", "evaluation-5way-5shot-within"])
    let compared = runCLI(["compare", trainedID, copiedID, "--store", storePath], currentDirectory: folder)
    XCTAssertEqual(compared.code, 0, compared.error)
    XCTAssert(compared.output.contains("| evaluation-5way-5shot-within |") && compared.output.contains("10 shared episodes"), compared.output)
    // Lake's runs had no copies: the same figure as the trained run's.
    XCTAssertEqual(try store.results(runID: copiedID).first { $0.protocolName == "lake20" }?.accuracy, try store.results(runID: trainedID).first { $0.protocolName == "lake20" }?.accuracy)
    let listed = runCLI(["report", "--store", storePath, "--format", "markdown"], currentDirectory: folder)
    XCTAssert(listed.output.contains("eval, 4 test-time copies"), listed.output)
    let board = runCLI(["report", "--leaderboard", "--store", storePath, "--format", "markdown"], currentDirectory: folder)
    XCTAssert(board.output.contains("tiny-proto (4 test-time copies)"), board.output)
    // An outside scorer embeds its own images: copies are refused before anything is recorded.
    let before = try store.listRuns().count
    let refused = runCLI(["run", config, "--eval-only", "--scorer", "python3 examples/scorers/pixel_scorer.py", "--store", storePath, "--set", "evaluation.1.augmentedCopies=4"], currentDirectory: folder)
    XCTAssertEqual(refused.code, 2, refused.error)
    XCTAssert(refused.error.contains("evaluation[1].augmentedCopies: an outside scorer embeds the images it is sent"), refused.error)
    XCTAssertEqual(try store.listRuns().count, before)
  }

  func testTheVinyalsSplitTrainsAndScoresOnItsOwnClasses() throws {
    let config = try experiment(
      split: "vinyals", steps: 4,
      evaluation: """
        [{"protocol": "episodes", "split": "evaluation", "episodes": 5, "seed": 7, "spec": {"ways": 20, "shots": 1, "queries": 2, "alphabetMode": "across"}},
         {"protocol": "episodes", "split": "validation", "episodes": 5, "seed": 7, "spec": {"ways": 5, "shots": 1, "queries": 2, "alphabetMode": "across"}}]
        """)
    // Snell et al.'s loader and initialisation (protonet-vinyals-snell.json's two keys).
    let runs = folder.appendingPathComponent("runs")
    let result = runCLI(
      ["run", config, "--store", storePath, "--runs", runs.path, "--set", "model.resampling=nearest", "--set", "model.initialization=pytorch"], currentDirectory: folder)
    XCTAssertEqual(result.code, 0, result.error)
    XCTAssert(result.error.contains("4112 training / 688 validation classes"), result.error)
    let store = try ResultsStore(path: storePath)
    let run = try XCTUnwrap(try store.listRuns().first).id
    XCTAssertEqual(try store.results(runID: run).map(\.split), ["vinyals/test", "vinyals/val"])
    // The checkpoint carries the resampling, and predict resizes a user's image with it: a
    // 105x105 image whose PIL-nearest pixels are exactly a 28x28 one is at distance 0 from it
    // (area averaging would blend the other pixels in).
    let checkpoint = runs.appendingPathComponent(run).appendingPathComponent("last.safetensors")
    XCTAssertEqual(try Checkpoint.readModel(checkpoint).model.config.resampling, .nearest)
    let small = (0..<784).map { UInt8(($0 * 37) % 256) }
    var large = [UInt8](repeating: 255, count: 105 * 105)
    for y in 0..<28 { for x in 0..<28 { large[((2 * y + 1) * 105 / 56) * 105 + (2 * x + 1) * 105 / 56] = small[y * 28 + x] } }
    let support = folder.appendingPathComponent("support")
    try FileManager.default.createDirectory(at: support, withIntermediateDirectories: true)
    try Data(GrayImage(width: 105, height: 105, pixels: large).encodePNG()).write(to: support.appendingPathComponent("large.png"))
    let query = folder.appendingPathComponent("small.png")
    try Data(GrayImage(width: 28, height: 28, pixels: small).encodePNG()).write(to: query)
    let ranked = runCLI(["predict", "--checkpoint", checkpoint.path, "--query", query.path, "--support", support.path, "--format", "csv"])
    XCTAssertEqual(ranked.code, 0, ranked.error)
    XCTAssertEqual(ranked.output.components(separatedBy: "\r\n")[1], "1,0.000000,large.png")
  }

  func testMethodMistakesAreRefusedBeforeARowNamingTheKey() throws {
    let config = try experiment()
    let cases: [([String], String)] = [
      (["training.episode.ways=5000"], "training.episode: impossible episode specification: 5000-way episodes need 5000 classes"),
      (["training.episode.queries=20"], "training.episode.shots + queries: at most 20"),
      // Too many images a step: the key that sets them (issue #45, cause R: it said "lower pairsPerStep").
      (["training.episode.ways=5000", "model.blocks=[[64], [64]]"], "training.episode: a step of 15000 images of this network needs about 25 GB of activations"),
      (["model.similarity=head"], "model.similarity: the prototypical objective trains an embedding"),
      (["training.objective=relation"], "model.similarity: the relation objective needs \"similarity\": \"relation\""),
      (["model.similarity=relation"], "model.similarity: the prototypical objective needs \"similarity\": \"euclidean\"; a network with \"relation\" trains with \"relation\""),
      // Two distances that differ: the objective's is named (it once said the network "has no head to train on pairs").
      (["model.similarity=cosine"], "model.similarity: the prototypical objective needs \"similarity\": \"euclidean\"; a network with \"cosine\" trains with \"matching\""),
      (["training.objective=pairs"], "training.episode: the pairs objective draws pairs, not episodes"),
      (["training.pairing=batch"], "training.pairing: pairing is how the pairs objective draws its pairs"),
      (["training.adaptation.steps=2"], "training.adaptation: the prototypical objective does not adapt its network to each episode (maml does); remove the key"),
      (["training.objective=maml", "training.adaptation.steps=0"], "training.adaptation.steps: adaptation steps of a training step, 1 to 100"),
      (["training.objective=maml", "training.adaptation.learningRate=-1"], "training.adaptation.learningRate: the adaptation's step size, in (0, 10]"),
      (["training.objective=maml", "training.adaptation.stepz=3"], "training.adaptation.stepz: unknown key 'stepz'; allowed: learningRate, scoringSteps, steps"),
      (["data.split=vinyals"], "evaluation[0]: Lake's runs draw on Atlantean, Ge_ez, Glagolitic and Gurmukhi, whose characters the Vinyals split trains on"),
      (["data.split=imagenet"], "data.split: one of lake, vinyals, vinyals-trainval; got imagenet"),
    ]
    for (sets, expected) in cases {
      let result = runCLI(["run", config, "--store", storePath] + sets.flatMap { ["--set", $0] }, currentDirectory: folder)
      XCTAssertEqual(result.code, 2, "\(sets): \(result.error)")
      XCTAssert(result.error.contains(expected), "\(sets): \(result.error)")
      XCTAssertEqual(result.error.split(separator: "\n").count, 1, result.error)
      XCTAssertFalse(FileManager.default.fileExists(atPath: storePath), "\(sets): nothing is recorded")
    }
    // A network without a head cannot be trained on pairs, and a pairs budget is not episodes.
    let file = folder.appendingPathComponent("pairs.json").path
    let text = try String(contentsOfFile: config, encoding: .utf8)
    try Data(text.replacingOccurrences(of: "\"objective\": \"prototypical\", \"episode\": {\"ways\": 5, \"shots\": 1, \"queries\": 2, \"alphabetMode\": \"across\"},", with: "").utf8)
      .write(to: URL(fileURLWithPath: file))
    let pairs = runCLI(["run", file, "--store", storePath], currentDirectory: folder)
    XCTAssertEqual(pairs.code, 2)
    XCTAssert(pairs.error.contains("training.objective: a network with \"similarity\": \"euclidean\" has no head"), pairs.error)
    try Data(text.replacingOccurrences(of: "\"steps\": 30", with: "\"pairs\": 300").utf8).write(to: URL(fileURLWithPath: file))
    let budget = runCLI(["run", file, "--store", storePath], currentDirectory: folder)
    XCTAssertEqual(budget.code, 2)
    XCTAssert(budget.error.contains("training.pairs: the prototypical objective trains on episodes"), budget.error)
  }
}
