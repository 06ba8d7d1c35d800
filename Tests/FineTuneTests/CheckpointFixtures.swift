import Foundation
import Testing
@testable import FineTune

// Shared by the PyTorch-file and Hugging Face-folder suites: the fixtures' model, a zip writer
// for re-packed and hostile archives, and JSON fixtures read with Foundation (independent of
// FineTune's own JSON reader).

/// The torchvision-style ResNet of the `tiny-resnet` fixture (scripts/make-checkpoint-fixtures.py):
/// conv1/bn1/relu, `layer1 = [BasicBlock(c1, c1)]`, `layer2 = [BasicBlock(c1, c2, stride 2)]`, avgpool, fc.
final class TinyResNet: Module {
    let conv1: Conv2d
    let bn1: BatchNorm2d
    let relu = ReLU()
    let layer1: Sequential
    let layer2: Sequential
    let avgpool = AdaptiveAvgPool2d(1)
    let flatten = Flatten()
    let fc: Linear

    init(inChannels: Int = 3, channels: [Int] = [4, 8], classes: Int = 5) {
        conv1 = Conv2d(inChannels, channels[0], kernelSize: 3, padding: 1, bias: false)
        bn1 = BatchNorm2d(channels[0])
        layer1 = Sequential(ResidualBlock(channels[0], channels[0]))
        layer2 = Sequential(ResidualBlock(channels[0], channels[1], stride: 2))
        fc = Linear(channels[1], classes)
        super.init()
    }

    override func forward(_ x: Tensor) -> Tensor {
        fc(flatten(avgpool(layer2(layer1(relu(bn1(conv1(x))))))))
    }
}

/// `max |a - b| <= 1e-4 * max(1, max |b|)`: the parity bound for reproduced reference outputs.
func expectReproduces(_ output: Tensor, _ reference: Tensor, _ comment: String = "",
                      sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(output.shape == reference.shape, "\(comment): shape \(output.shape) vs \(reference.shape)", sourceLocation: sourceLocation)
    let scale = max(1, reference.scalars.map(abs).max() ?? 0)
    let worst = zip(output.scalars, reference.scalars).map { abs($0 - $1) }.max() ?? .infinity
    #expect(worst <= 1e-4 * scale, "\(comment): max |output - reference| = \(worst)", sourceLocation: sourceLocation)
}

/// A fixture JSON file parsed by Foundation.
func jsonFixture(_ path: String) throws -> [String: Any] {
    try #require(JSONSerialization.jsonObject(with: Data(contentsOf: fixtureURL(path))) as? [String: Any])
}

/// Writes stored zip archives like `torch.save`, optionally with every zip64 structure
/// (sentinel 32-bit fields, zip64 extra fields, zip64 end record and locator).
struct ZipBuilder {
    var entries: [(name: String, bytes: [UInt8])] = []

    /// The entries of an archive, in order.
    init(reading data: Data) throws {
        let zip = try ZipArchive(data)
        entries = zip.entries.map { ($0.name, [UInt8](zip.contents($0))) }
    }

    init(_ entries: [(name: String, bytes: [UInt8])]) { self.entries = entries }

    subscript(suffix: String) -> [UInt8]? {
        get { entries.first { $0.name.hasSuffix(suffix) }?.bytes }
        set {
            let i = entries.firstIndex { $0.name.hasSuffix(suffix) }!
            entries[i].bytes = newValue!
        }
    }

    func build(zip64: Bool = false) -> Data {
        var out: [UInt8] = [], central: [UInt8] = []
        func u16(_ v: Int, _ to: inout [UInt8]) { to += [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF)] }
        func u32(_ v: UInt64, _ to: inout [UInt8]) { for i in 0..<4 { to.append(UInt8(v >> (8 * UInt64(i)) & 0xFF)) } }
        func u64(_ v: UInt64, _ to: inout [UInt8]) { for i in 0..<8 { to.append(UInt8(v >> (8 * UInt64(i)) & 0xFF)) } }
        let sentinel: UInt64 = 0xFFFF_FFFF
        for (name, bytes) in entries {
            let offset = UInt64(out.count), size = UInt64(bytes.count), nameBytes = Array(name.utf8)
            var localExtra: [UInt8] = []
            if zip64 { u16(1, &localExtra); u16(16, &localExtra); u64(size, &localExtra); u64(size, &localExtra) }
            u32(0x0403_4B50, &out); u16(45, &out); u16(0, &out); u16(0, &out); u16(0, &out); u16(0, &out)
            u32(0, &out); u32(zip64 ? sentinel : size, &out); u32(zip64 ? sentinel : size, &out)
            u16(nameBytes.count, &out); u16(localExtra.count, &out)
            out += nameBytes + localExtra + bytes

            var extra: [UInt8] = []
            if zip64 { u16(1, &extra); u16(24, &extra); u64(size, &extra); u64(size, &extra); u64(offset, &extra) }
            u32(0x0201_4B50, &central); u16(45, &central); u16(45, &central); u16(0, &central); u16(0, &central)
            u16(0, &central); u16(0, &central); u32(0, &central)
            u32(zip64 ? sentinel : size, &central); u32(zip64 ? sentinel : size, &central)
            u16(nameBytes.count, &central); u16(extra.count, &central); u16(0, &central); u16(0, &central); u16(0, &central)
            u32(0, &central); u32(zip64 ? sentinel : offset, &central)
            central += nameBytes + extra
        }
        let directoryOffset = UInt64(out.count), directorySize = UInt64(central.count), count = UInt64(entries.count)
        out += central
        if zip64 {
            let record = UInt64(out.count)
            u32(0x0606_4B50, &out); u64(44, &out); u16(45, &out); u16(45, &out); u32(0, &out); u32(0, &out)
            u64(count, &out); u64(count, &out); u64(directorySize, &out); u64(directoryOffset, &out)
            u32(0x0706_4B50, &out); u32(0, &out); u64(record, &out); u32(1, &out)
        }
        u32(0x0605_4B50, &out); u16(0, &out); u16(0, &out)
        u16(zip64 ? 0xFFFF : Int(count), &out); u16(zip64 ? 0xFFFF : Int(count), &out)
        u32(zip64 ? sentinel : directorySize, &out); u32(zip64 ? sentinel : directoryOffset, &out); u16(0, &out)
        return Data(out)
    }
}
