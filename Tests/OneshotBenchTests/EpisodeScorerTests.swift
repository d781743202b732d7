import Foundation
import ResultsStore
import TestSupport
import XCTest

/// Version 2 of the outside-scorer protocol (docs/SCORER_PROTOCOL.md): whole episodes to a scorer
/// written with the Python package, recorded and reported as the harness's own results, the
/// transductive mark in every report, an `error` line as one line; and nothing a scorer is sent
/// tells a label the protocol does not give (issue #45, cause D).
final class EpisodeScorerTests: TemporaryFolderTestCase {
  let lake = repositoryRoot.appendingPathComponent("examples/scorers/lake20-105.json").path
  let package = repositoryRoot.appendingPathComponent("python").path

  func write(_ name: String, _ script: String) throws -> String {
    let path = folder.appendingPathComponent("\(name).py").path
    try Data(("import sys; sys.path.insert(0, '\(package)')\nimport numpy as np\nfrom oneshot_scorer import *\n" + script).utf8).write(to: URL(fileURLWithPath: path))
    return "python3 \(path)"
  }

  func run(_ experiment: String, _ command: String, environment: [String: String] = [:]) -> (code: Int32, output: String, error: String) {
    runCLI(["run", experiment, "--eval-only", "--scorer", command, "--store", storePath] + dataArguments, environment: environment, currentDirectory: repositoryRoot)
  }

  func testAnEpisodeScorerOfPixelsIsThePixelBaselineAndIsMarkedWhenTransductive() throws {
    // Each query's score for a class: minus its squared distance to the class's mean ink, which
    // is the pixel baseline's rule; Lake's runs are 1-shot, so the figure is the baseline's 19.00%.
    let body = """
      def score(support, labels, queries, ways):
          s = as_float(support).reshape(len(support), -1).astype(np.float64)
          q = as_float(queries).reshape(len(queries), -1).astype(np.float64)
          means = np.stack([s[labels == c].mean(0) for c in range(ways)])
          return -((q[:, None, :] - means[None, :, :]) ** 2).sum(2)
      serve_episodes(score, input_size=105, model="pixel-episodes", transductive=sys.argv[1] == "yes")
      """
    let inductive = run(lake, try write("pixels", body) + " no")
    XCTAssertEqual(inductive.code, 0, inductive.error)
    let store = try ResultsStore(path: storePath)
    let first = try XCTUnwrap(try store.listRuns().first)
    XCTAssertEqual(try XCTUnwrap(try store.results(runID: first.id).first).accuracy, 0.19, accuracy: 1e-12)
    var tags = Dictionary(try store.run(first.id).tags.map { ($0.key, $0.value) }) { $1 }
    XCTAssertEqual(tags["scorer.output"], "episodes")
    XCTAssertEqual(tags["scorer.protocol"], "2")
    XCTAssertEqual(tags[TagKey.scorerTransductive], "no")
    XCTAssertFalse(runCLI(["report", "--store", storePath]).output.contains("transductive"))

    let transductive = run(lake, try write("pixels", body) + " yes")
    XCTAssertEqual(transductive.code, 0, transductive.error)
    let second = try XCTUnwrap(try store.listRuns().first)
    tags = Dictionary(try store.run(second.id).tags.map { ($0.key, $0.value) }) { $1 }
    XCTAssertEqual(tags[TagKey.scorerTransductive], "yes")
    // The mark in every report format, and `run tag` cannot remove it.
    let table = runCLI(["report", "--store", storePath]).output
    XCTAssert(table.contains("external, transductive"), table)
    XCTAssert(table.contains("not comparable with inductive"), table)
    let csv = runCLI(["report", "--store", storePath, "--format", "csv"]).output.split(separator: "\r\n")
    XCTAssertEqual(csv[0].split(separator: ",")[3], "transductive")
    XCTAssertEqual(csv.first { $0.hasPrefix(second.id) }?.split(separator: ",")[3], "yes")
    XCTAssertEqual(csv.first { $0.hasPrefix(first.id) }?.split(separator: ",")[3], "no")
    let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(runCLI(["report", "--store", storePath, "--format", "json"]).output.utf8)) as? [[String: Any]])
    XCTAssertEqual(json.first { $0["run"] as? String == second.id }?["transductive"] as? Bool, true)
    XCTAssert(runCLI(["report", "--store", storePath, "--format", "markdown"]).output.contains("external, transductive"))
    XCTAssert(runCLI(["report", "--store", storePath, "--run", second.id]).output.contains("transductive: the method used each episode's queries together"))
    let html = folder.appendingPathComponent("report.html").path
    XCTAssertEqual(runCLI(["report", "--store", storePath, "--format", "html", "--output", html]).code, 0)
    XCTAssert(try String(contentsOfFile: html, encoding: .utf8).contains("external, transductive"))
    let comparison = runCLI(["compare", first.id, second.id, "--store", storePath]).output
    XCTAssert(comparison.contains("\(second.id) (transductive)"), comparison)
    XCTAssert(comparison.contains("+0.00 [+0.00, +0.00]"), comparison)
    XCTAssertNotEqual(runCLI(["run", "tag", second.id, "scorer.transductive=no", "--store", storePath]).code, 0)
  }

  /// A scorer that never reads a pixel scores at chance, whatever of the sending order it uses:
  /// its embedding is each image's sequence number (before: 87.78% on 20-way 1-shot); a scorer of
  /// pairs that scores by the pair's place in the request; a scorer of episodes that answers by
  /// the query's place and the support's order.
  func testTheOrderOfWhatIsSentTellsNoLabel() throws {
    let experiment = folder.appendingPathComponent("twenty-way.json").path
    try Data(
      """
      {"name": "order-check", "model": {"backbone": "vgg16", "inputSize": 28, "blocks": [[64], [64], [64], [64]]},
       "evaluation": [{"protocol": "episodes", "split": "evaluation", "episodes": 100, "seed": 3, "spec": {"ways": 20, "shots": 1, "queries": 1, "alphabetMode": "within"}}]}
      """.utf8
    ).write(to: URL(fileURLWithPath: experiment))
    let cheats = [
      (
        "numbers",
        """
        count = [0]
        def embed(images):
            count[0] += len(images)
            return np.arange(count[0] - len(images), count[0], dtype=np.float64)[:, None]
        serve_embeddings(embed, input_size=28, model="numbers", distance="euclidean")
        """
      ),
      (
        "places",
        """
        def score(left, right):
            return -np.abs(np.arange(len(left)) % 21 - 0.0)
        serve_pairs(score, input_size=28, model="places")
        """
      ),
      (
        "positions",
        """
        def score(support, labels, queries, ways):
            scores = np.zeros((len(queries), ways))
            for q in range(len(queries)):
                scores[q, labels[q % len(labels)]] = 1
            return scores
        serve_episodes(score, input_size=28, model="positions")
        """
      ),
    ]
    for (name, body) in cheats {
      let result = run(experiment, try write("cheat_" + name, body))  // (not numbers.py: that would shadow the standard module)
      XCTAssertEqual(result.code, 0, result.error)
      let store = try ResultsStore(path: storePath)
      let accuracy = try XCTUnwrap(try store.results(runID: try XCTUnwrap(try store.listRuns().first).id).first).accuracy
      // Chance is 5%; 100 queries at chance exceed 16% with probability below 1e-4.
      XCTAssertLessThan(accuracy, 0.16, "\(name) learned labels from the order")
    }
  }

  func testAScorersErrorAndMalformedRowsAreOneLineAndTheRunFails() throws {
    let cases = [
      ("raises", "def score(s, l, q, w):\n    raise ValueError('checkpoint has 3 channels')\nserve_episodes(score, input_size=105, model='e')", "it reported an error while the harness waited for the class scores of query 1 of 20: ValueError: checkpoint has 3 channels"),
      ("wide", "import sys\nsys.stdout.write('oneshot-scorer 2 input=105 output=episodes model=w\\n'); sys.stdout.flush()\nfor line in sys.stdin:\n    w, s, q = map(int, line.split()[1:])\n    [sys.stdin.readline() for _ in range(s + q)]\n    print(' '.join(['1'] * (w + 1)), flush=True)", "wrote 21 scores for query 1 of an episode of 20 classes"),
    ]
    for (name, body, expected) in cases {
      let result = run(lake, try write(name, body))
      XCTAssertEqual(result.code, 2, result.error)
      XCTAssertEqual(result.error.split(separator: "\n").filter { $0.hasPrefix("error") }.count, 1, result.error)
      XCTAssert(result.error.contains(expected), result.error)
      let failed = try XCTUnwrap(try ResultsStore(path: storePath).listRuns().first)
      XCTAssertEqual(failed.status, .failed)
      XCTAssert(failed.error?.contains(expected) ?? false, failed.error ?? "")
    }
  }

  func testHelloLinesOfVersionTwoAreChecked() throws {
    for hello in [
      "oneshot-scorer 1 input=105 output=episodes model=m",  // episodes need version 2
      "oneshot-scorer 2 input=105 output=embeddings distance=cosine transductive=yes model=m",  // only episodes say it
      "oneshot-scorer 2 input=105 output=episodes transductive=maybe model=m",
      "oneshot-scorer 3 input=105 output=episodes model=m",
    ] {
      let result = run(lake, try write("hello", "print('\(hello)', flush=True)\nimport time; time.sleep(5)"))
      XCTAssertEqual(result.code, 2, hello)
      XCTAssert(result.error.contains("not a hello line"), result.error)
      XCTAssertEqual(try ResultsStore(path: storePath, mustExist: false).listRuns().count, 0, "nothing recorded for \(hello)")
    }
  }
}
