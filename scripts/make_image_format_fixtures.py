#!/usr/bin/python3
"""Writes test/fixtures/formats/: one small photo as Windows bitmaps of every kind
fastvision decodes itself (libvips as sharp ships it reads no BMP), each beside a PNG
of the pixels it must decode to. Pillow writes the bitmaps; the top-down and 16-bit
ones are laid out by hand from Pillow's pixels. Run with /usr/bin/python3 (python3-pil)."""
import os
import struct

from PIL import Image

here = os.path.dirname(os.path.abspath(__file__))
out = os.path.join(here, '..', 'test', 'fixtures', 'formats')
os.makedirs(out, exist_ok=True)
src = os.path.join(here, '..', 'test', 'fixtures', 'photos', 'dogscats', 'test', 'wheaten_terrier_169.jpg')
# An odd width exercises the row padding of every bit depth.
photo = Image.open(src).convert('RGB').resize((23, 17), Image.BILINEAR)

def save(img, name):
    img.save(os.path.join(out, f'{name}.bmp'))
    img.convert('RGB').save(os.path.join(out, f'{name}.png'))

save(photo, 'rgb24')
save(photo.quantize(200), 'p8')
save(photo.convert('L'), 'l8')
save(photo.convert('1'), 'mono1')
save(photo.quantize(16), 'p4')

def bmp(width, height, bpp, rows, compression=0, extra=b''):
    """A BITMAPINFOHEADER file; `rows` in file order, each padded to 4 bytes."""
    data = b''.join(r + b'\0' * (-len(r) % 4) for r in rows)
    offset = 14 + 40 + len(extra)
    header = struct.pack('<IiiHHIIiiII', 40, width, height, 1, bpp, compression, len(data), 2835, 2835, 0, 0)
    return b'BM' + struct.pack('<IHHI', offset + len(data), 0, 0, offset) + header + extra + data

w, h = photo.size
px = photo.load()
# Top-down 24-bit: a negative height, rows from the top.
rows = [bytes(c for x in range(w) for c in reversed(px[x, y])) for y in range(h)]
open(os.path.join(out, 'topdown24.bmp'), 'wb').write(bmp(w, -h, 24, rows))
photo.save(os.path.join(out, 'topdown24.png'))
# 16-bit 5-5-5 (bottom-up) and 5-6-5 bit fields: the PNG holds what the bits scale back to.
def sixteen(name, masks):
    shifts = [(m & -m).bit_length() - 1 for m in masks]
    maxes = [m >> s for m, s in zip(masks, shifts)]
    expect = Image.new('RGB', (w, h))
    rows = []
    for y in reversed(range(h)):
        row = b''
        for x in range(w):
            q = [round(c * mx / 255) for c, mx in zip(px[x, y], maxes)]
            row += struct.pack('<H', sum(v << s for v, s in zip(q, shifts)))
            expect.putpixel((x, y), tuple(int(v * 255 / mx + 0.5) for v, mx in zip(q, maxes)))
        rows.append(row)
    extra = struct.pack('<III', *masks) if masks != [0x7C00, 0x03E0, 0x001F] else b''
    open(os.path.join(out, f'{name}.bmp'), 'wb').write(bmp(w, h, 16, rows, 3 if extra else 0, extra))
    expect.save(os.path.join(out, f'{name}.png'))

sixteen('rgb555', [0x7C00, 0x03E0, 0x001F])
sixteen('rgb565', [0xF800, 0x07E0, 0x001F])
print('wrote', sorted(os.listdir(out)))
