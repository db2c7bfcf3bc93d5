package android.graphics;

/** ARGB pixels in memory, with the factory methods and accessors the snippet calls. */
public class Bitmap {
    public enum Config { ARGB_8888 }

    private final int[] argb;
    private final int width;
    private final int height;

    private Bitmap(int[] argb, int width, int height) {
        this.argb = argb;
        this.width = width;
        this.height = height;
    }

    public static Bitmap createBitmap(int[] colors, int width, int height, Config config) {
        return new Bitmap(colors.clone(), width, height);
    }

    public static Bitmap createBitmap(Bitmap source, int x, int y, int width, int height) {
        if (x < 0 || y < 0 || x + width > source.width || y + height > source.height) {
            throw new IllegalArgumentException("crop outside the bitmap");
        }
        int[] out = new int[width * height];
        for (int r = 0; r < height; r++) {
            System.arraycopy(source.argb, (y + r) * source.width + x, out, r * width, width);
        }
        return new Bitmap(out, width, height);
    }

    /** Android returns the source when the size is unchanged; the stub supports only that case. */
    public static Bitmap createScaledBitmap(Bitmap source, int width, int height, boolean filter) {
        if (width == source.width && height == source.height) {
            return source;
        }
        throw new UnsupportedOperationException("stub: feed images already at the model's input size");
    }

    public int getWidth() { return width; }
    public int getHeight() { return height; }

    public void getPixels(int[] pixels, int offset, int stride, int x, int y, int width, int height) {
        for (int r = 0; r < height; r++) {
            System.arraycopy(argb, (y + r) * this.width + x, pixels, offset + r * stride, width);
        }
    }

    public int getPixel(int x, int y) { return argb[y * width + x]; }
}
