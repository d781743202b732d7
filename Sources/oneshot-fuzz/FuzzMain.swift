import Experiments
import OneshotCLI
import Foundation

// The fuzzing driver of the readers in `Experiments/Fuzzing.swift`. Built by `scripts/fuzz`
// with -DFUZZING and -sanitize=fuzzer,address, libFuzzer's driver runs the target named by
// ONESHOT_FUZZ_TARGET. In an ordinary build it replays files instead:
//   oneshot-fuzz TARGET FILE... : feeds each file to TARGET's reader and says whether it was
//   accepted (a crash here is the bug a fuzzer found, reproduced without the sanitizers).

#if FUZZING
  /// The target of this fuzzing process, from ONESHOT_FUZZ_TARGET.
  let fuzzTarget: FuzzTarget = {
    let name = ProcessInfo.processInfo.environment["ONESHOT_FUZZ_TARGET"] ?? ""
    guard let target = FuzzTarget(rawValue: name) else {
      printNote("set ONESHOT_FUZZ_TARGET to one of \(FuzzTarget.allCases.map(\.rawValue).joined(separator: ", "))")
      exit(2)
    }
    return target
  }()

  @_cdecl("LLVMFuzzerTestOneInput")
  public func fuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    fuzzInput(fuzzTarget, bytes)
    return 0
  }

  /// libFuzzer's driver (compiler-rt, linked by -sanitize=fuzzer).
  @_silgen_name("LLVMFuzzerRunDriver")
  func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
  ) -> CInt

  /// SwiftPM links an executable's entry as `<module>_main`: here it starts libFuzzer.
  @_cdecl("oneshot_fuzz_main")
  public func fuzzingMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var count = argc
    var arguments = argv
    return LLVMFuzzerRunDriver(&count, &arguments) { data, size in fuzzerTestOneInput(data, size) }
  }
#else
  @main
  enum Replay {
    static func main() {
      let arguments = CommandLine.arguments.dropFirst()
      guard let name = arguments.first, let target = FuzzTarget(rawValue: name), arguments.count > 1 else {
        printNote("usage: oneshot-fuzz \(FuzzTarget.allCases.map(\.rawValue).joined(separator: "|")) FILE...")
        exit(2)
      }
      for path in arguments.dropFirst() {
        guard let data = FileManager.default.contents(atPath: path) else {
          printError("cannot read \(path)")
          exit(2)
        }
        print("\(path): \(fuzzInput(target, [UInt8](data)) ? "accepted" : "refused")")
      }
    }
  }
#endif
