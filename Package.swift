// swift-tools-version:6.0
import Foundation
import PackageDescription

// MARK: - How FineTune gets full SIMD speed
//
// The kernels are written with Swift SIMD types. Compiled for baseline x86-64 they run on
// SSE without FMA; compiled for the host CPU (`-target-cpu native`) they use AVX2/AVX-512
// with fused multiply-add. `unsafeFlags` would make this package unusable as a versioned
// dependency, so the manifest adds them only when FineTune is built as the *root* package
// (this repository: `swift run`, `swift test`, CI). As a dependency it adds none, and the
// consuming app opts in on its own command line (see README, "Full speed"):
//
//     swift build -c release -Xswiftc -target-cpu -Xswiftc native -Xswiftc -DFINETUNE_NATIVE
//
// `FINETUNE_TARGET_CPU` overrides the choice: `portable` (no CPU flags), `native` (default
// for the root package), or an LLVM CPU name such as `x86-64-v3` or `znver4`.

let packageDirectory = Context.packageDirectory
let isDependencyCheckout = ["/checkouts/", "/SourcePackages/", "/repositories/"]
    .contains { packageDirectory.contains($0) }
let requestedCPU = Context.environment["FINETUNE_TARGET_CPU"]
    ?? (isDependencyCheckout ? "portable" : "native")

var kernelSettings: [SwiftSetting] = []
if requestedCPU != "portable" {
    kernelSettings = [
        .unsafeFlags(["-target-cpu", requestedCPU]),
        .define("FINETUNE_NATIVE"),
    ]
}

let package = Package(
    name: "FineTune",
    // Synchronization's Atomic (thread limit, worker pool) needs these on Apple systems.
    platforms: [.macOS(.v15), .iOS(.v18), .tvOS(.v18), .watchOS(.v11), .visionOS(.v2)],
    products: [
        .library(name: "FineTune", targets: ["FineTune"]),
        .executable(name: "FineTuneBench", targets: ["FineTuneBench"]),
    ],
    targets: [
        .target(
            name: "FineTune",
            swiftSettings: kernelSettings
        ),
        .executableTarget(
            name: "FineTuneBench",
            dependencies: ["FineTune"],
            swiftSettings: kernelSettings
        ),
        .testTarget(
            name: "FineTuneTests",
            dependencies: ["FineTune"],
            resources: [.copy("Fixtures")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
