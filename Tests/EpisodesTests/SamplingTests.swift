import Support
import XCTest

@testable import Episodes

final class SamplingTests: XCTestCase {
  let evaluation = ClassPool(split: Loaded.evaluation)

  func digest(_ episodes: [Episode]) -> String {
    let split = evaluation.split
    var text = ""
    for episode in episodes {
      text += "\(episode.index):"
      for c in episode.classes.indices {
        text += " \(split.characters[episode.classes[c]].name)@\(episode.alphabet.map { split.alphabets[$0] } ?? "-")"
        text += " s" + episode.support[c].map { split.images[$0].path }.joined(separator: ",")
        text += " q" + episode.queries[c].map { split.images[$0].path }.joined(separator: ",")
      }
      text += "\n"
    }
    return SHA256.hex(Array(text.utf8))
  }

  func testSameSeedSameEpisodesAndOrderIndependence() throws {
    let spec = EpisodeSpec(ways: 20, shots: 1, queries: 1, alphabetMode: .within)
    let a = try EpisodeSampler(pool: evaluation, spec: spec, seed: 7)
    let b = try EpisodeSampler(pool: evaluation, spec: spec, seed: 7)
    let forward = a.episodes(count: 30)
    XCTAssertEqual(forward, b.episodes(count: 30))
    let reversed = (0..<30).reversed().map { b.episode($0) }.reversed()
    XCTAssertEqual(forward, Array(reversed))
    XCTAssertEqual(a.episode(17), forward[17])
    XCTAssertNotEqual(try EpisodeSampler(pool: evaluation, spec: spec, seed: 8).episode(0), forward[0])
  }

  func testGoldenDigestOfFirstEpisodes() throws {
    // Guards the sampling algorithm: if this changes, episodes are no longer comparable with
    // earlier runs. Change it only on purpose, and say so in the changelog.
    let within = try EpisodeSampler(pool: evaluation, spec: EpisodeSpec(ways: 20, shots: 1, queries: 1), seed: 7)
    XCTAssertEqual(digest(within.episodes(count: 5)), "31830629b0016af16ddc053b6d53680ead1b578eeaae5002410086a679b2323c")
    let across = try EpisodeSampler(pool: evaluation, spec: EpisodeSpec(ways: 5, shots: 5, queries: 3, alphabetMode: .across, disjointDrawers: true), seed: 1)
    XCTAssertEqual(digest(across.episodes(count: 5)), "7435ed967f9a6b4fa0f89903d8b4d7d8c6d3ae8fa2d72e256dce78d0c634f605")
  }

  func testEpisodeStructure() throws {
    for mode in AlphabetMode.allCases {
      for disjoint in [false, true] {
        let spec = EpisodeSpec(ways: 5, shots: 3, queries: 4, alphabetMode: mode, disjointDrawers: disjoint)
        let sampler = try EpisodeSampler(pool: evaluation, spec: spec, seed: 3)
        for episode in sampler.episodes(count: 200) {
          XCTAssertEqual(Set(episode.classes).count, 5, "N distinct classes")
          let split = evaluation.split
          for c in 0..<5 {
            XCTAssertEqual(episode.support[c].count, 3)
            XCTAssertEqual(episode.queries[c].count, 4)
            XCTAssertTrue(Set(episode.support[c]).isDisjoint(with: episode.queries[c]), "no image in both support and query")
            for image in episode.support[c] + episode.queries[c] { XCTAssertEqual(split.images[image].character, episode.classes[c]) }
          }
          if mode == .within {
            let alphabets = Set(episode.classes.map { split.characters[$0].alphabet })
            XCTAssertEqual(alphabets, [episode.alphabet!])
          }
          if disjoint {
            let supportDrawers = Set(episode.support.flatMap { $0 }.map { split.images[$0].drawer })
            let queryDrawers = Set(episode.queries.flatMap { $0 }.map { split.images[$0].drawer })
            XCTAssertEqual(supportDrawers.count, 3)
            XCTAssertEqual(queryDrawers.count, 4)
            XCTAssertTrue(supportDrawers.isDisjoint(with: queryDrawers))
          }
        }
      }
    }
  }

  func testImpossibleSpecsFailBeforeAnyWork() {
    XCTAssertThrowsError(try EpisodeSampler(pool: evaluation, spec: EpisodeSpec(ways: 48, shots: 1, queries: 1), seed: 0)) { error in
      XCTAssert("\(error)".contains("largest in evaluation has 47"), "\(error)")
    }
    XCTAssertThrowsError(try EpisodeSampler(pool: evaluation, spec: EpisodeSpec(ways: 5, shots: 15, queries: 6), seed: 0)) { error in
      XCTAssert("\(error)".contains("shots + queries = 21"), "\(error)")
    }
    XCTAssertThrowsError(try EpisodeSampler(pool: evaluation, spec: EpisodeSpec(ways: 700, shots: 1, queries: 1, alphabetMode: .across), seed: 0))
    XCTAssertThrowsError(try EpisodeSampler(pool: evaluation, spec: EpisodeSpec(ways: 1, shots: 1, queries: 1), seed: 0))
    XCTAssertNoThrow(try EpisodeSampler(pool: evaluation, spec: EpisodeSpec(ways: 47, shots: 10, queries: 10), seed: 0))
    // shots + queries past Int.max: refused with a message, no arithmetic overflow (#45 A).
    XCTAssertThrowsError(try EpisodeSampler(pool: evaluation, spec: EpisodeSpec(ways: 5, shots: Int.max, queries: 1), seed: 0)) { error in
      XCTAssert("\(error)".contains("shots + queries = 9223372036854775807 + 1"), "\(error)")
    }
    let problems = EpisodeSpec(ways: 5, shots: Int.max, queries: Int.max).problems()
    XCTAssert(problems.contains { $0.keyPath == "shots + queries" }, "\(problems)")
  }

  func testTrainingAndValidationPoolsAreDisjoint() throws {
    let pools = try Loaded.background.trainingAndValidation(validationAlphabets: OmniglotAlphabets.defaultValidation)
    XCTAssertEqual(pools.validation.classes.count, 157)
    XCTAssertEqual(pools.training.classes.count, 964 - 157)
    XCTAssertTrue(Set(pools.training.classes).isDisjoint(with: pools.validation.classes))
    XCTAssertThrowsError(try Loaded.background.trainingAndValidation(validationAlphabets: ["Klingon"])) { error in
      XCTAssert("\(error)".contains("'Klingon' is not in the background split"), "\(error)")
    }
  }

  func testPairsAreBalancedAndOnlyFromTrainingClasses() throws {
    let pools = try Loaded.background.trainingAndValidation(validationAlphabets: OmniglotAlphabets.defaultValidation)
    let training = Set(pools.training.classes)
    let split = Loaded.background
    for fraction in [0.0, 0.5, 1.0] {
      let sampler = try PairSampler(pool: pools.training, sameAlphabetNegatives: fraction, seed: 11)
      var sameAlphabet = 0
      for b in 0..<20 {
        let batch = sampler.batch(b, pairs: 64)
        XCTAssertEqual(batch.filter(\.same).count, 32)
        XCTAssertEqual(batch, sampler.batch(b, pairs: 64))
        for pair in batch {
          let left = split.images[pair.left].character, right = split.images[pair.right].character
          XCTAssertTrue(training.contains(left) && training.contains(right))
          XCTAssertNotEqual(pair.left, pair.right)
          XCTAssertEqual(left == right, pair.same)
          if !pair.same && split.characters[left].alphabet == split.characters[right].alphabet { sameAlphabet += 1 }
        }
      }
      if fraction == 1.0 { XCTAssertEqual(sameAlphabet, 20 * 32) }
      if fraction == 0.5 { XCTAssert((240...400).contains(sameAlphabet), "\(sameAlphabet)") }
    }
  }

  func testAugmentationIsDeterministicAndIdentityWhenOff() {
    let split = Loaded.background
    let size = split.size
    var a = [Float](repeating: 0, count: size * size), b = a
    split.pixels.withUnsafeBufferPointer { all in
      let image = UnsafeBufferPointer(rebasing: all[0..<(size * size)])
      var rng1 = SplitMix64(seed: 1, key: 2, index: 3), rng2 = SplitMix64(seed: 1, key: 2, index: 3)
      a.withUnsafeMutableBufferPointer { AffineAugmentation.koch.apply(image, size: size, into: $0, rng: &rng1) }
      b.withUnsafeMutableBufferPointer { AffineAugmentation.koch.apply(image, size: size, into: $0, rng: &rng2) }
      XCTAssertEqual(a, b)
      var rng3 = SplitMix64(state: 99)
      a.withUnsafeMutableBufferPointer { AffineAugmentation.none.apply(image, size: size, into: $0, rng: &rng3) }
      XCTAssertEqual(a, image.map { Float($0) / 255 })
      // Always on: the image really changes, and keeps roughly its ink.
      var always = AffineAugmentation.koch
      always.probability = 1
      var rng4 = SplitMix64(state: 5)
      b.withUnsafeMutableBufferPointer { always.apply(image, size: size, into: $0, rng: &rng4) }
      XCTAssertNotEqual(a, b)
      let inkBefore = a.reduce(0, +), inkAfter = b.reduce(0, +)
      XCTAssert(inkAfter > 0.4 * inkBefore && inkAfter < 2.5 * inkBefore, "\(inkBefore) -> \(inkAfter)")
    }
  }
}

final class GroupedPairTests: XCTestCase {
  func testGroupedBatchesAreBalancedDeterministicAndFromTrainingClasses() throws {
    let pools = try Loaded.background.trainingAndValidation(validationAlphabets: OmniglotAlphabets.defaultValidation)
    let sampler = try PairSampler(pool: pools.training, sameAlphabetNegatives: 1, seed: 3)
    let split = Loaded.background
    let training = Set(pools.training.classes)
    for b in 0..<10 {
      let batch = sampler.groupedBatch(b, groups: 16)
      XCTAssertEqual(batch, sampler.groupedBatch(b, groups: 16))
      XCTAssertEqual(batch.images.count, 64)
      XCTAssertEqual(batch.pairs.count, 64)
      XCTAssertEqual(batch.pairs.filter(\.same).count, 32)
      for pair in batch.pairs {
        let left = split.images[batch.images[pair.left]], right = split.images[batch.images[pair.right]]
        XCTAssertTrue(training.contains(left.character) && training.contains(right.character))
        XCTAssertEqual(left.character == right.character, pair.same)
        XCTAssertNotEqual(left.drawer, right.drawer)
        if !pair.same { XCTAssertEqual(split.characters[left.character].alphabet, split.characters[right.character].alphabet) }
      }
    }
  }

  func testWithinBatchPairsAreAllSameCharacterPairsAndAsManyDifferentOnes() throws {
    let pools = try Loaded.background.trainingAndValidation(validationAlphabets: OmniglotAlphabets.defaultValidation)
    let sampler = try PairSampler(pool: pools.training, sameAlphabetNegatives: 1, seed: 3)
    XCTAssertNil(sampler.problemForBatchPairing)
    let split = Loaded.background
    let training = Set(pools.training.classes)
    for b in 0..<10 {
      let batch = sampler.withinBatch(b, groups: 4)
      XCTAssertEqual(batch, sampler.withinBatch(b, groups: 4))
      XCTAssertNotEqual(batch, sampler.withinBatch(b + 1, groups: 4))
      XCTAssertEqual(batch.images.count, 32)
      XCTAssertEqual(batch.pairs.count, 96)
      XCTAssertEqual(batch.pairs.filter(\.same).count, 48)
      XCTAssertEqual(Set(batch.pairs.map { [$0.left, $0.right] }).count, 96, "no pair twice")
      for g in 0..<4 {
        let members = batch.images[(8 * g)..<(8 * g + 8)].map { split.images[$0] }
        XCTAssertEqual(Set(members.map(\.character)).count, 2)
        XCTAssertEqual(Set(members.prefix(4).map(\.drawer)).count, 4, "four drawers of the first character")
        XCTAssertEqual(members.prefix(4).map(\.drawer), members.suffix(4).map(\.drawer), "the same four drawers for the second")
      }
      for pair in batch.pairs {
        XCTAssertEqual(pair.left / 8, pair.right / 8, "pairs stay within their group")
        let left = split.images[batch.images[pair.left]], right = split.images[batch.images[pair.right]]
        XCTAssertTrue(training.contains(left.character) && training.contains(right.character))
        XCTAssertEqual(left.character == right.character, pair.same)
        XCTAssertNotEqual(left.drawer, right.drawer)
        if !pair.same { XCTAssertEqual(split.characters[left.character].alphabet, split.characters[right.character].alphabet) }
      }
    }
  }
}
