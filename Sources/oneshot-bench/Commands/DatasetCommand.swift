import ArgumentParser
import Episodes
import Foundation

/// `oneshot-bench dataset ...`
struct DatasetCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "dataset", abstract: "Check the Omniglot data.", subcommands: [Verify.self])

  /// `oneshot-bench dataset verify`: checksums, counts and load time.
  struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Verify checksums and counts, and time loading both splits.")

    @OptionGroup var data: DataOptions

    func run() throws {
      let dataset = data.dataset
      print("dataset: \(dataset.root.path)")
      let checks = try dataset.verifyChecksums()
      for check in checks {
        print("  \(check.ok ? "ok      " : (check.actual == nil ? "MISSING " : "MISMATCH")) \(check.file)")
      }
      let bad = checks.filter { !$0.ok }
      let start = Date()
      let splits = try dataset.load([.background, .evaluation])
      let seconds = Date().timeIntervalSince(start)
      let expected: [String: (Int, Int, Int)] = ["background": (30, 964, 19_280), "evaluation": (20, 659, 13_180)]
      var countsOK = true
      for split in splits {
        let counts = (split.alphabets.count, split.characters.count, split.images.count)
        let want = expected[split.name]!
        let ok = counts == want
        countsOK = countsOK && ok
        print("  \(ok ? "ok      " : "MISMATCH") \(split.name): \(counts.0) alphabets, \(counts.1) characters, \(counts.2) images (expected \(want.0) / \(want.1) / \(want.2))")
      }
      let runs = try LakeRuns.load(from: dataset)
      print("  ok       lake20: \(runs.runs.count) runs x \(runs.runs[0].test.count) trials, \(runs.names.count) images")
      print(String(format: "  loaded and decoded %d images in %.3f s", splits.reduce(0) { $0 + $1.images.count }, seconds))
      print("  fingerprint: \(try dataset.fingerprint())")
      if let evaluation = splits.first(where: { $0.name == "evaluation" }) {
        let sampler = try EpisodeSampler(pool: ClassPool(split: evaluation), spec: EpisodeSpec(ways: 20, shots: 1, queries: 1), seed: 0)
        let count = 20_000
        let started = Date()
        var checksum = 0
        for i in 0..<count { checksum &+= sampler.episode(i).queries[0][0] }
        let rate = Double(count) / Date().timeIntervalSince(started)
        print(String(format: "  sampler: %.0f episodes/s (20-way 1-shot within-alphabet, one thread; checksum %d)", rate, checksum % 997))
      }
      if !bad.isEmpty || !countsOK {
        throw UserFacingError("dataset check failed (\(bad.map(\.file).joined(separator: ", "))); restore dataset/omniglot from a fresh clone")
      }
    }
  }
}
