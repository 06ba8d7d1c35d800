import Testing
@testable import FineTune

// withoutGradients around async code: the setting survives suspension points, reaches child
// tasks, stays out of other tasks, and synchronous callers keep the synchronous form.

/// Suspends, then reports whether an op on a trainable tensor recorded a graph.
private func recordsGraph() async -> Bool {
    await Task.yield()
    var w = Tensor([1, 2])
    w.requiresGrad = true
    return (w * 2).requiresGrad
}

@Suite("withoutGradients in async code")
struct GradModeAsyncTests {
    @Test func holdsAcrossSuspensionAndInChildTasks() async {
        let (before, inside, child, after) = await withoutGradients {
            (GradMode.isEnabled, await recordsGraph(), await Task { await recordsGraph() }.value, GradMode.isEnabled)
        }
        #expect(!before && !inside && !after)
        #expect(!child, "an unstructured child task inherits task-locals")
        async let concurrent = withoutGradients { await recordsGraph() }
        let concurrentRecorded = await concurrent
        #expect(!concurrentRecorded)
        let recordsAfter = await recordsGraph()
        #expect(GradMode.isEnabled && recordsAfter, "gradients are back on after the call")
        let other = await withoutGradients { await Task.detached { await recordsGraph() }.value }
        #expect(other, "a detached task does not inherit the setting")
        // The synchronous form is still chosen for a synchronous closure in an async context.
        var w = Tensor([1, 2])
        w.requiresGrad = true
        let recordedSync = withoutGradients { (w * 3).requiresGrad }
        #expect(!recordedSync)
    }

    @Test func errorsPropagateAndTheModeIsRestored() async {
        struct Stop: Error {}
        await #expect(throws: Stop.self) {
            try await withoutGradients { await Task.yield(); throw Stop() }
        }
        #expect(GradMode.isEnabled)
    }
}
