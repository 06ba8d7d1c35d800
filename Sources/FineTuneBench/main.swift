import FineTune
print("FineTuneBench: placeholder")
