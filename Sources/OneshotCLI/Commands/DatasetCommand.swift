import ArgumentParser
import Episodes
import Experiments
import Foundation
import Reports

/// `oneshot-bench dataset ...`
struct DatasetCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "dataset", abstract: "Check the Omniglot data, or a folder of your own images; export a split as such a folder.", subcommands: [Verify.self, Export.self])

  /// `oneshot-bench dataset export --split S --to DIR`.
  struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Write an Omniglot split as a folder of your own images (DIR/<alphabet>/<character>/<id>_<drawer>.png, the archive's PNGs byte for byte).")

    @OptionGroup var data: DataOptions
    @Option(help: "Split to write: background, evaluation, background_small1 or background_small2.") var split: OmniglotSplit = .background
    @Option(help: "A new or empty folder to write into (nothing is ever replaced).") var to: String

    func run() throws {
      let started = Date()
      let display = ProgressDisplay(), rate = PhaseRate()
      InterruptFlag.install()
      let count: Int
      do {
        count = try data.dataset.export(
          split, to: URL(fileURLWithPath: to),
          progress: { done, total in display.update("exporting \(split.rawValue): \(rate.text(done: done, total: total, unit: "images"))", force: done == total) },
          stop: { InterruptFlag.requested })
      } catch is ExportStopped {
        display.finish()
        throw InterruptedBeforeRecording(signal: InterruptFlag.signal, detail: "while exporting; nothing was written to \(to) (the partial copy was removed)")
      }
      display.finish()
      print(String(format: "wrote %d images of %@ to %@ in %.1f s; train on it with data.folder (see README, \"Your own images\")", count, split.rawValue, to, Date().timeIntervalSince(started)))
    }
  }

  /// `oneshot-bench dataset verify`: checksums, counts and load time.
  struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Verify Omniglot's checksums and counts and time loading both splits; with --folder, list a folder's groups, classes and every problem.")

    @OptionGroup var data: DataOptions
    @Option(help: "A folder of your own images (ROOT/<group>/<class>/*.png) to check instead of Omniglot.") var folder: String?
    @Option(help: "With --folder: also check that N-way K-shot episodes with Q queries can be drawn (e.g. --ways 5 --shots 1 --queries 1).") var ways: Int?
    @Option(help: "With --folder and --ways: support images per class.") var shots: Int = 1
    @Option(help: "With --folder and --ways: query images per class.") var queries: Int = 1

    func run() throws {
      if let folder { return try verifyFolder(folder) }
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

    /// Counts and every problem of an image folder; exits 1 when there are problems.
    func verifyFolder(_ path: String) throws {
      let root = URL(fileURLWithPath: path)
      let started = Date()
      let scan = FolderDataset(root: root).scan()
      let classes = scan.classes
      let groups = Dictionary(grouping: classes, by: \.group)
      print("folder: \(visible(root.path))")
      for group in groups.keys.sorted(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) }) {
        let members = groups[group]!
        let counts = members.map(\.images)
        print("  \(visible(group)): \(members.count) classes, \(counts.reduce(0, +)) images (\(counts.min()!)-\(counts.max()!) per class)")
      }
      print(String(format: "  %d groups, %d classes, %d images read in %.2f s", groups.count, classes.count, scan.images.count, Date().timeIntervalSince(started)))
      let sizes = scan.sizes.sorted { $0.value > $1.value }.map { "\($0.key) x\($0.value)" }
      if !sizes.isEmpty { print("  sizes: \(sizes.joined(separator: ", "))\(scan.sizes.count > 1 ? " (mixed: every image is resized to the model's input)" : "")") }
      if !scan.images.isEmpty { print("  fingerprint: \(scan.fingerprint)") }
      var problems = scan.problems
      if let ways, problems.isEmpty {
        let split = try FolderDataset(root: root).load(size: 28).split
        let pool = ClassPool(split: split)
        let mode = pool.fitted(EpisodeSpec(ways: ways, shots: shots, queries: queries, alphabetMode: .within)).alphabetMode
        do {
          _ = try EpisodeSampler(pool: pool, spec: EpisodeSpec(ways: ways, shots: shots, queries: queries, alphabetMode: mode), seed: 0)
          print("  ok       \(ways)-way \(shots)-shot episodes with \(queries) quer\(queries == 1 ? "y" : "ies") per class can be drawn (\(mode.rawValue) groups)")
        } catch {
          problems.append("\(ways)-way \(shots)-shot: \(error)")
        }
      }
      for problem in problems { print("  PROBLEM  \(visible(problem))") }
      if !problems.isEmpty {
        printError("\(problems.count) problem\(problems.count == 1 ? "" : "s") in \(root.path); fix them (listed above) before evaluating on it")
        throw ExitCode(1)
      }
    }
  }
}

extension OmniglotSplit: ExpressibleByArgument {}
