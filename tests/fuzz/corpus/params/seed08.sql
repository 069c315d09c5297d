SELECT /* /* :a */ :x */ :b -- :c
, :d