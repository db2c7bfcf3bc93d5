package ai.onnxruntime;

import edgekit.stub.StubModel;
import java.nio.FloatBuffer;
import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashSet;
import java.util.Map;
import java.util.Set;

/** The snippet's view of an ONNX Runtime session: run() answers with what the HTP simulator
 * computed in the test (see edgekit.stub.StubModel). */
public class OrtSession implements AutoCloseable {
    public static class SessionOptions implements AutoCloseable {
        final Map<String, String> qnn = new HashMap<>();

        int threads = -1;

        public void addQnn(Map<String, String> options) { qnn.putAll(options); }

        public void setIntraOpNumThreads(int threads) { this.threads = threads; }

        @Override
        public void close() {}
    }

    public static class Result implements AutoCloseable {
        private final OnnxTensor output;

        Result(OnnxTensor output) { this.output = output; }

        public OnnxValue get(int index) { return output; }

        @Override
        public void close() {}
    }

    public Set<String> getInputNames() { return new LinkedHashSet<>(Collections.singletonList(StubModel.tensors().get(0))); }
    public Set<String> getOutputNames() { return new LinkedHashSet<>(Collections.singletonList(StubModel.tensors().get(2))); }

    public Result run(Map<String, ? extends OnnxTensor> inputs) {
        OnnxTensor input = inputs.get(StubModel.tensors().get(0));
        if (input == null || !java.util.Arrays.equals(input.shape, StubModel.shape(1))) {
            throw new IllegalArgumentException("no input of the model's name and shape");
        }
        float[] out = StubModel.run(input.data);
        return new Result(new OnnxTensor(FloatBuffer.wrap(out), StubModel.shape(3)));
    }

    @Override
    public void close() {}
}
