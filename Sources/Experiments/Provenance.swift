import Foundation
import Model

/// Where a number came from: the code, the machine, the toolchain.
package struct Provenance {
  package var gitCommit: String?
  package var gitDirty: Bool?
  package var host: String
  package var cpu: String
  package var swiftVersion: String

  /// Reads git state of the current directory, or, where there is no repository (a container
  /// image built without `.git`), the commit the image was built from, `ONESHOT_GIT_COMMIT`
  /// (the Containerfile sets it at build time; dirty state unknown then); the host name, the CPU
  /// model and the compiler version this binary was built with.
  package static func current() -> Provenance {
    var commit = shell("git", ["rev-parse", "HEAD"])?.trimmingCharacters(in: .whitespacesAndNewlines)
    var status = shell("git", ["status", "--porcelain", "--untracked-files=no"])
    if commit?.isEmpty ?? true, let built = ProcessInfo.processInfo.environment["ONESHOT_GIT_COMMIT"], built.count == 40, built.allSatisfy(\.isHexDigit) {
      commit = built
      status = nil
    }
    var cpu = "unknown"
    if let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
      let line = info.split(separator: "\n").first(where: { $0.hasPrefix("model name") }),
      let colon = line.firstIndex(of: ":")
    {
      cpu = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces) + " x\(ProcessInfo.processInfo.activeProcessorCount)"
    }
    // The class its kernels ran at (the model name alone does not say AVX2 from AVX-512 or bf16)
    // and the oneDNN that ran them (Debian's 2.6, or a 3.x build: scripts/onednn3).
    cpu += " (\(KernelISA.description); oneDNN \(oneDNNVersion))"
    return Provenance(
      gitCommit: (commit?.isEmpty ?? true) ? nil : commit, gitDirty: commit == nil || status == nil ? nil : !(status ?? "").isEmpty,
      host: ProcessInfo.processInfo.hostName, cpu: cpu, swiftVersion: compilerVersion)
  }

  /// Runs a command and returns its standard output, or nil when it fails.
  package static func shell(_ command: String, _ arguments: [String]) -> String? {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = [command] + arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = FileHandle.nullDevice
    guard (try? process.run()) != nil else { return nil }
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return process.terminationStatus == 0 ? String(decoding: data, as: UTF8.self) : nil
  }
}

/// The Swift compiler that built this binary.
package let compilerVersion: String = {
  #if compiler(>=6.4)
    return "6.4+"
  #elseif compiler(>=6.3)
    return "6.3"
  #elseif compiler(>=6.2)
    return "6.2"
  #else
    return "6.x"
  #endif
}()
