package org.tensorflow.lite;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.Arrays;
import java.util.List;

/**
 * The snippet's view of LiteRT's Interpreter. A JVM cannot run the model, so the test puts in the
 * folder named by -Dedgekit.stub.dir: tensors.txt (input name, input shape, output name, output
 * shape; one per line, shapes comma-separated) and output.bin (the output ai-edge-litert computed);
 * run() saves the input it was given to input.bin and writes output.bin into the output buffer.
 */
public class Interpreter implements AutoCloseable {
    public static class Options {
        int threads = -1;

        public Options setNumThreads(int threads) {
            this.threads = threads;
            return this;
        }
    }

    private final Path dir = Paths.get(System.getProperty("edgekit.stub.dir"));
    private final Tensor input;
    private final Tensor output;

    public Interpreter(ByteBuffer model, Options options) {
        if (model.capacity() < 8) {
            throw new IllegalArgumentException("not a model");
        }
        try {
            List<String> lines = Files.readAllLines(dir.resolve("tensors.txt"));
            input = new Tensor(lines.get(0), shape(lines.get(1)));
            output = new Tensor(lines.get(2), shape(lines.get(3)));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private static int[] shape(String csv) {
        return Arrays.stream(csv.split(",")).mapToInt(Integer::parseInt).toArray();
    }

    public Tensor getInputTensor(int index) { return input; }
    public Tensor getOutputTensor(int index) { return output; }

    public void run(Object in, Object out) {
        ByteBuffer source = ((ByteBuffer) in).duplicate();
        ByteBuffer target = (ByteBuffer) out;
        try {
            byte[] given = new byte[source.remaining()];
            source.get(given);
            Files.write(dir.resolve("input.bin"), given);
            byte[] result = Files.readAllBytes(dir.resolve("output.bin"));
            if (result.length != target.remaining()) {
                throw new IllegalArgumentException("output buffer holds " + target.remaining() + " bytes, the model gives " + result.length);
            }
            target.put(result);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    @Override
    public void close() {}
}
