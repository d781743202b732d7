import Foundation
import XCTest

@testable import Model

/// What the harness says about the CPU's kernels (recorded with every run, and deciding whether
/// bf16 is timed at all) agrees with the CPU's own flags, on oneDNN 2.x and 3.x alike: the bit
/// values of oneDNN's instruction-set enumeration changed between them (AMX is 0x3e7 in 2.6 and
/// 0xfef in 3.x, where 0x1ef, AVX-512 with fp16, has the bit 2.6's AMX test read).
final class KernelISATests: XCTestCase {
  func testTheKernelsClassAgreesWithTheCPUFlags() throws {
    let info = try String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)
    let line = try XCTUnwrap(info.split(separator: "\n").first { $0.hasPrefix("flags") })
    let flags = Set(line.split(separator: ":")[1].split(separator: " ").map(String.init))
    let avx512 = ["avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd"].allSatisfy(flags.contains)
    // The kernels never use more than the CPU has.
    if KernelISA.avx2 { XCTAssert(flags.contains("avx2") && flags.contains("fma"), "AVX2 kernels on a CPU without AVX2") }
    if KernelISA.avx512 { XCTAssert(avx512, "AVX-512 kernels on a CPU without AVX-512") }
    if KernelISA.bf16 { XCTAssert(flags.contains("avx512_bf16"), "bf16 kernels on a CPU without AVX512_BF16") }
    if KernelISA.amx { XCTAssert(flags.contains("amx_bf16") && flags.contains("amx_tile"), "AMX kernels on a CPU without AMX") }
    // Each class includes the smaller ones.
    if KernelISA.amx { XCTAssert(KernelISA.bf16) }
    if KernelISA.bf16 { XCTAssert(KernelISA.avx512) }
    if KernelISA.avx512 { XCTAssert(KernelISA.avx2) }
    // And, unless oneDNN was told to use less, they use what it has (AMX also needs the kernel's
    // permission, so only the sets below it are required).
    let environment = ProcessInfo.processInfo.environment
    guard environment["ONEDNN_MAX_CPU_ISA"] == nil, environment["DNNL_MAX_CPU_ISA"] == nil else { return }
    XCTAssertEqual(KernelISA.avx2, flags.contains("avx2") && flags.contains("fma"))
    XCTAssertEqual(KernelISA.avx512, avx512)
    XCTAssertEqual(KernelISA.bf16, avx512 && flags.contains("avx512_bf16"))
    XCTAssertFalse(KernelISA.description.isEmpty)
  }
}
